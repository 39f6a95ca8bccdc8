from django.urls import path

from apps.portal import entry_views, staff_views, views

app_name = "portal"
urlpatterns = [
    path("", views.index, name="index"),
    path("manifest.webmanifest", entry_views.manifest, name="manifest"),
    path("staff/<str:hospital_code>/slip/", staff_views.slip, name="staff_slip"),
    path("<str:hospital_code>/", views.home, name="home"),
    path("<str:hospital_code>/login/", views.login, name="login"),
    path("<str:hospital_code>/verify/", views.verify, name="verify"),
    path("<str:hospital_code>/logout/", views.logout, name="logout"),
    path("<str:hospital_code>/q/<str:token>/", entry_views.qr_entry, name="qr_entry"),
    path("<str:hospital_code>/share/<str:token>/", entry_views.share_entry, name="share_open"),
    path("<str:hospital_code>/wechat/", entry_views.wechat_start, name="wechat_start"),
    path("<str:hospital_code>/wechat/callback/", entry_views.wechat_callback, name="wechat_callback"),
    path("<str:hospital_code>/studies/<uuid:study_id>/", views.study, name="study"),
    path("<str:hospital_code>/studies/<uuid:study_id>/view/", views.view_images, name="view_images"),
    path("<str:hospital_code>/studies/<uuid:study_id>/download/", views.download_link, name="download"),
    path("<str:hospital_code>/studies/<uuid:study_id>/share/", views.share_new, name="share_new"),
    path("<str:hospital_code>/download/<str:signed>/", views.download_file, name="download_file"),
    path("<str:hospital_code>/shares/", views.shares, name="shares"),
    path("<str:hospital_code>/shares/<uuid:share_id>/created/", views.share_created, name="share_created"),
    path("<str:hospital_code>/shares/<uuid:share_id>/revoke/", views.share_withdraw, name="share_revoke"),
    path("<str:hospital_code>/history/", views.history, name="history"),
]
