"""HTTP API of the example project: enqueue an echo task, read a task's state (/healthz is the glue's)."""
import json
import uuid

from celery import states
from celery.app.task import Context
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_celery_results.models import TaskResult
from kombu.exceptions import OperationalError

from jobs.tasks import echo

PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(type(value), "value")


def short_error(exc: BaseException) -> str:
    """`<Type>: <first line>`, cut short; kombu and redis-py messages never hold the password."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:200]


def error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@require_POST
def enqueue_echo(request):
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        return error('body is not JSON: send {"value": <any JSON>}', 400)
    if not isinstance(body, dict):
        return error(f'body is a JSON {json_type(body)}, not an object: send {{"value": <any JSON>}}', 400)
    if "value" not in body:
        return error('body has no "value": send {"value": <any JSON>}', 400)
    task_id = str(uuid.uuid4())
    # Recorded before publishing, so GET /api/tasks/<id> tells "queued" (PENDING) from "unknown"; the
    # worker overwrites this row with STARTED and SUCCESS/FAILURE.
    request_context = Context(id=task_id, task=echo.name, args=[body["value"]], kwargs={})
    echo.backend.store_result(task_id, None, states.PENDING, request=request_context)
    try:
        echo.apply_async(args=[body["value"]], task_id=task_id, retry_policy=PUBLISH_RETRY_POLICY)
    except OperationalError as exc:
        TaskResult.objects.filter(task_id=task_id, status=states.PENDING).delete()
        return error(f"broker unavailable, task not queued: {short_error(exc)}", 503)
    return JsonResponse({"id": task_id}, status=202)


@require_GET
def task_status(request, task_id: str):
    row = TaskResult.objects.filter(task_id=task_id).first()
    if row is None:
        return error("unknown task id", 404)
    return JsonResponse({
        "id": row.task_id,
        "status": row.status,
        "result": json.loads(row.result) if row.result else None,
        # date_done is the row's last update: only a finished task has a date it was done.
        "date_done": row.date_done.isoformat() if row.status in states.READY_STATES and row.date_done else None,
    })
