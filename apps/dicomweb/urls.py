from django.urls import path

from apps.dicomweb import frames, qido, rendered, stow, wado

study = "studies/<str:study_uid>"
series = f"{study}/series/<str:series_uid>"
instance = f"{series}/instances/<str:sop_uid>"


class StudiesView(qido.StudySearchView, stow.StowView):
    """GET searches studies (QIDO-RS); POST stores instances (STOW-RS)."""


class StudyView(wado.RetrieveView, stow.StowView):
    """GET retrieves the study (WADO-RS); POST stores instances into it (STOW-RS)."""


app_name = "dicomweb"
urlpatterns = [
    path("studies", StudiesView.as_view(), name="studies"),
    path("series", qido.SeriesSearchView.as_view(), name="all_series"),
    path("instances", qido.InstanceSearchView.as_view(), name="all_instances"),
    path(f"{study}", StudyView.as_view(), name="study"),
    path(f"{study}/metadata", wado.MetadataView.as_view(), name="study_metadata"),
    path(f"{study}/rendered", rendered.ResourceRenderedView.as_view(), name="study_rendered"),
    path(f"{study}/series", qido.SeriesSearchView.as_view(), name="study_series"),
    path(f"{study}/instances", qido.InstanceSearchView.as_view(), name="study_instances"),
    path(f"{series}", wado.RetrieveView.as_view(), name="series"),
    path(f"{series}/metadata", wado.MetadataView.as_view(), name="series_metadata"),
    path(f"{series}/rendered", rendered.ResourceRenderedView.as_view(), name="series_rendered"),
    path(f"{series}/instances", qido.InstanceSearchView.as_view(), name="series_instances"),
    path(f"{instance}", wado.RetrieveView.as_view(), name="instance"),
    path(f"{instance}/metadata", wado.MetadataView.as_view(), name="instance_metadata"),
    path(f"{instance}/rendered", rendered.RenderedView.as_view(), name="instance_rendered"),
    path(f"{instance}/frames/<str:frame_list>", frames.FramesView.as_view(), name="instance_frames"),
    path(f"{instance}/frames/<str:frame_list>/rendered", rendered.RenderedView.as_view(), name="frames_rendered"),
]
