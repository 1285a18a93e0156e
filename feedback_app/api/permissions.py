from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    """Staff only: imports, exports, statistics and other labelers' data."""

    message = "Only staff can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
