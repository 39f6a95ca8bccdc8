from django.urls import path

from apps.core import views

app_name = "core"
urlpatterns = [
    path("", views.home, name="home"),
    path("h/<str:hospital_code>/", views.hospital_home, name="hospital_home"),
]
