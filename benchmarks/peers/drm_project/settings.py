"""The smallest Django project that serves django-river-ml 0.0.21's API under /api/.

Storage is the package's default shelve file, placed under benchmarks/.work by the
DRM_SHELVE_PATH environment variable; authentication and rate limits are off, as in the
package's own defaults.
"""

import os

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "django_river_ml",
]
# The package's own timing middleware keeps the per-model predict/learn counts (/api/stats/).
MIDDLEWARE = ["django_river_ml.middleware.timer_middleware"]
ROOT_URLCONF = "drm_project.urls"
WSGI_APPLICATION = "drm_project.wsgi.application"
_WORK = os.environ.get("DRM_WORK_DIR", os.path.dirname(os.path.abspath(__file__)))
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_WORK, "django.db")}
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK: dict[str, object] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
DJANGO_RIVER_ML = {
    "STORAGE_BACKEND": "shelve",
    "SHELVE_PATH": os.path.join(_WORK, "shelve"),
    "APP_DIR": _WORK,
    "CACHE_DIR": os.path.join(_WORK, "cache"),
    "DISABLE_AUTHENTICATION": True,
    "VIEW_RATE_LIMIT_DISABLE": True,
    "SHELVE_SECRET_KEY": "benchmark",
    "JWT_SERVER_SECRET": "benchmark",
}
USE_TZ = True
