from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.sign_in, name="login"),
    path("login/verify/", views.otp_verify, name="otp_verify"),
    path("login/enrol/", views.otp_enrol, name="otp_enrol"),
    path("logout/", views.sign_out, name="logout"),
]
