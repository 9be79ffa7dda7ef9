from django.contrib import admin
from django.urls import path

from jobs import views

urlpatterns = [
    path("api/tasks/echo", views.enqueue_echo, name="enqueue-echo"),
    path("api/tasks/<str:task_id>", views.task_status, name="task-status"),
    path("admin/", admin.site.urls),
]
