"""/healthz for any project: answered first, before its redirects (SECURE_SSL_REDIRECT), host checks and URLconf.

The healthcheck of the web container (tenantstack.healthcheck) and `./invoke up` ask plain HTTP on loopback;
a project that redirects everything to HTTPS or answers only its own host names must not make them fail.
"""
from django.http import JsonResponse

HEALTHZ_PATH = "/healthz"


class HealthzMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != HEALTHZ_PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"error": "use GET"}, status=405)
        from django.conf import settings

        from tenantstack import health

        parts = {"database": health.database_status(), "broker": health.broker_status()}
        status = 200 if all(v == "ok" for v in parts.values()) else 503
        return JsonResponse({"tenant": settings.TENANT, **parts}, status=status)
