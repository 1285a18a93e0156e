from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("feedback_app", "0003_closed_loop")]

    operations = []
