from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback_app", "0005_chat"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="servers",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text=(
                    "vLLM servers that serve this version, [{url, pid}] (blue/green full weights, and adapters "
                    "loaded on them); empty: the configured VLLM_URLS. Every process routes by it."
                ),
            ),
        ),
    ]
