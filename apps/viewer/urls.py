from django.urls import URLPattern, URLResolver, path

from apps.viewer import views

study = "studies/<str:study_id>/"
series = f"{study}series/<str:series_id>/"

app_name = "viewer"
urlpatterns: list[URLPattern | URLResolver] = [
    path("decode-worker.js", views.decode_worker, name="decode_worker"),
    path(study, views.study_page, name="study"),
    path(f"{series}metadata", views.series_metadata, name="series_metadata"),
    path(f"{series}thumbnail", views.series_thumbnail, name="series_thumbnail"),
    path(f"{series}instances/<str:instance_id>/frames/<str:frame_list>", views.instance_frames, name="frames"),
    # One frame, single part; ".../frames/<n>" ends it because the image loader reads the frame number there.
    path(f"{series}instances/<str:instance_id>/raw/frames/<str:frame>", views.instance_frame, name="raw_frame"),
]
