from django.urls import path

from feedback_app.views import chat, labeling

urlpatterns = [
    path("", labeling.home, name="home"),
    path("projects/<int:project_id>/label/", labeling.label, name="label"),
    path("projects/<int:project_id>/label/submit/", labeling.label_submit, name="label-submit"),
    path("projects/<int:project_id>/label/skip/", labeling.label_skip, name="label-skip"),
    path("chat/", chat.home, name="chat"),
    path("chat/send/", chat.send, name="chat-new"),
    path("chat/<int:conversation_id>/", chat.conversation, name="chat-conversation"),
    path("chat/<int:conversation_id>/send/", chat.send, name="chat-send"),
    path("chat/<int:conversation_id>/delete/", chat.delete, name="chat-delete"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/stream/", chat.stream, name="chat-stream"),
    path("chat/<int:conversation_id>/messages/<int:message_id>/choose/", chat.choose, name="chat-choose"),
]
