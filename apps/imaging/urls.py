from django.urls import path

from apps.imaging import views

app_name = "imaging"
urlpatterns = [
    path("upload/", views.upload_page, name="upload"),
    path("upload/files", views.upload_files, name="upload_files"),
    path("upload/<uuid:batch>/status", views.upload_status, name="upload_status"),
]
