from django.contrib import admin
from django.urls import include, path

from apps.core.favicon import favicon
from apps.core.views import healthz
from apps.portal.entry_views import short_link

handler404 = "apps.core.views.page_not_found"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for it on every page; without it each page logs a 404.
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("api/<str:hospital_code>/dicom-web/", include("apps.dicomweb.urls")),
    path("api/<str:hospital_code>/reports/", include("apps.reports.urls")),
    path("api/<str:hospital_code>/", include("apps.imaging.api_urls")),
    path("api/", include("apps.tenants.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("h/<str:hospital_code>/reports/", include("apps.reports.staff_urls")),
    path("r/", include("apps.reports.public_urls")),
    path("h/<str:hospital_code>/", include("apps.imaging.urls")),
    path("viewer/<str:hospital_code>/", include("apps.viewer.urls")),
    path("portal/", include("apps.portal.urls")),
    path("s/<str:token>", short_link, name="short_link"),
    path("api/<str:hospital_code>/portal/", include("apps.portal.api_urls")),
    path("", include("apps.core.urls")),
]
