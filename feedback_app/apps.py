from django.apps import AppConfig


class FeedbackAppConfig(AppConfig):
    name = "feedback_app"
    verbose_name = "Human feedback"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_delete, post_save
        from rest_framework.authtoken.models import Token

        from feedback_app.api.auth import forget_token_on_delete, forget_user_tokens

        post_delete.connect(forget_token_on_delete, sender=Token, dispatch_uid="forget-token")
        post_save.connect(
            forget_user_tokens, sender=settings.AUTH_USER_MODEL, dispatch_uid="forget-user-tokens"
        )
