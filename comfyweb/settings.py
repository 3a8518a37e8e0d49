"""ComfyWeb settings: one file, every deployment choice read from the environment.

The zero-setup defaults (SQLite and an embedded Redis under COMFYWEB_DATA_DIR) make
`make run` work on a fresh machine; production sets DATABASE_URL, REDIS_URL,
SECRET_KEY and ALLOWED_HOSTS. See the configuration table in README.md.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from comfyweb.env import (
    ConfigError,
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    env_url,
    origin_list,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

DATA_DIR = env_path("COMFYWEB_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ConfigError("SECRET_KEY must be set when DEBUG is off (it signs sessions and CSRF)")
    SECRET_KEY = "django-insecure-comfyweb-development-only"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = origin_list("CSRF_TRUSTED_ORIGINS", [])

# --- Database ----------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{DATA_DIR / 'comfyweb.sqlite3'}",
    schemes=frozenset({"sqlite", "postgres", "postgresql", "pgsql"}),
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, monitor) share the file: wait for locks
    # instead of failing, and let readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, job broker, cache ---------------------------------
REDIS_URL = env_url("REDIS_URL", None, schemes=frozenset({"redis", "rediss", "unix"}))
EMBEDDED_REDIS = REDIS_URL is None
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
if EMBEDDED_REDIS:
    REDIS_URL = f"unix://{EMBEDDED_REDIS_SOCKET}"

# redis-py gives up reading after socket_timeout (5 s by default), and the layer
# waits for a message with a 5 s blocking pop: on an idle channel the client timed
# out first, every 5 s, failing the receive (a live socket closed with 1011).
CHANNEL_LAYER_READ_TIMEOUT = 15.0  # seconds, above channels_redis's brpop_timeout (5 s)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_READ_TIMEOUT}],
            "prefix": "comfyweb:asgi",
        },
    }
}
CACHE_TIMEOUT = 5.0  # seconds
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "comfyweb",
        # A Redis that hangs instead of refusing must not hang its caller (dispatch
        # writes waiting reasons while it holds the claim lock): give up, as if down.
        "OPTIONS": {"socket_timeout": CACHE_TIMEOUT, "socket_connect_timeout": CACHE_TIMEOUT},
    }
}
Q_CLUSTER = {
    "name": "comfyweb",
    "workers": env_int("WORKER_PROCESSES", 2, minimum=1, maximum=64),
    # A job that outlives `timeout` is killed; `retry` must be longer so a
    # running job is never handed to a second worker while the first still runs.
    "timeout": 300,
    "retry": 360,
    "max_attempts": 3,
    "redis": REDIS_URL,
    "catch_up": False,
    # Successful jobs are not kept: saving one pruned the table under a lock that read
    # up to save_limit rows per job (~7 % of the worker's CPU per task). The work they
    # did is on its own records (task timelines, downloads); failures are kept.
    "save_limit": -1,
    "ack_failures": True,
    # The admin's heading over django-q's rows (comfyweb/job_names.py names the rows).
    "label": "Background jobs",
}
# Prompts ComfyWeb keeps on the whole fleet at once (S7), whatever the servers' slots.
COMFYWEB_MAX_INFLIGHT = env_int("COMFYWEB_MAX_INFLIGHT", 64, minimum=1, maximum=100_000)
# Priority aging (fairness/aging.py): a pending task rises one priority level per this
# many seconds waited, up to Urgent, so a Low task outranks fresh Urgent work after
# three times this. 0 turns aging off.
COMFYWEB_AGING_SECONDS_PER_LEVEL = env_int(
    "COMFYWEB_AGING_SECONDS_PER_LEVEL", 600, minimum=0, maximum=30 * 86_400
)
# Monitors split the fleet by lease (servers/monitor/leases.py): one that stops
# renewing loses its servers to the others after this many seconds.
COMFYWEB_MONITOR_LEASE_SECONDS = env_int(
    "COMFYWEB_MONITOR_LEASE_SECONDS", 8, minimum=3, maximum=600
)
# A monitor's id, stable across its restarts (e.g. "monitor-1" in its unit file): a
# restarted monitor then renews its leases at once rather than waiting them out, and
# its ComfyUI client ids are the same, so it gets the events of the prompts it sent.
# Unset: a new id per process start. Two monitors running at once must not share one.
COMFYWEB_MONITOR_ID = env_str("COMFYWEB_MONITOR_ID", "")
# The label that marks the Docker containers this deployment made; empty: an id kept in
# the database (FleetSettings). Tests set their own; set it to keep it across a new database.
COMFYWEB_DEPLOYMENT = env_str("COMFYWEB_DEPLOYMENT", "")
# The models library (issue #14): ComfyUI's folder names (checkpoints, loras, vae, ...)
# under one directory; local instances are launched with it as an extra model path and
# container pools mount it read-only.
COMFYWEB_MODELS_DIR = env_path("COMFYWEB_MODELS_DIR", DATA_DIR / "models")

# Who may scrape /metrics (issue 17): a request bearing this token, or one from these
# networks; never anyone by default (no token, loopback only).
COMFYWEB_METRICS_TOKEN = env_str("COMFYWEB_METRICS_TOKEN", "")
COMFYWEB_METRICS_NETWORKS = env_networks("COMFYWEB_METRICS_NETWORKS", ["127.0.0.0/8", "::1/128"])

# Signed webhooks (issue 18, webhooks/): outbound requests refuse private, loopback,
# link-local, multicast and reserved addresses unless this is on (tests turn it on).
COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = env_bool("COMFYWEB_WEBHOOKS_ALLOW_PRIVATE", False)
COMFYWEB_WEBHOOKS_TIMEOUT_SECONDS = env_int(
    "COMFYWEB_WEBHOOKS_TIMEOUT_SECONDS", 10, minimum=1, maximum=120
)
# A delivery is retried on comfyweb.backoff for this long after its event, then given up.
COMFYWEB_WEBHOOKS_RETRY_HOURS = env_int("COMFYWEB_WEBHOOKS_RETRY_HOURS", 6, minimum=0, maximum=72)
# An endpoint is disabled after this many failed attempts in a row (any delivery).
COMFYWEB_WEBHOOKS_DISABLE_AFTER = env_int(
    "COMFYWEB_WEBHOOKS_DISABLE_AFTER", 20, minimum=1, maximum=10_000
)

# --- Applications ------------------------------------------------------------
INSTALLED_APPS = [
    # daphne's runserver, without importing Twisted outside the web process.
    "comfyweb.daphne_app.DaphneRunserverConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Before django_q: its `qcluster` command is comfyweb's (safe to stop by group).
    "comfyweb",
    "django_q",
    "ninja",
    "api",
    "servers",
    "library",
    "teams",
    "workflows",
    "tasks",
    "onboarding",
    "accounting",
    "fairness",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything that could read a query parameter or a body into a database query.
    "comfyweb.guard.RequestGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every view needs a logged-in user unless it is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "comfyweb.urls"
ASGI_APPLICATION = "comfyweb.asgi.application"
WSGI_APPLICATION = "comfyweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "comfyweb.context_processors.navigation",
            ],
            # when, ago, elapsed, until, duration: one way to show time on every page.
            "builtins": ["comfyweb.templatetags.times"],
        },
    }
]

# --- Auth ----------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security headers ----------------------------------------------------------
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    # 'self' covers ws:// and wss:// to this origin in CSP level 3 browsers.
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
# Behind a TLS proxy, plain-HTTP requests are redirected to HTTPS and browsers are
# told to stay on HTTPS (HSTS) for a year, unless the environment says otherwise;
# without one, a LAN install over plain HTTP keeps working. The load balancer's
# health check may speak plain HTTP, so /healthz is never redirected.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if BEHIND_TLS_PROXY else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# --- Static and media files ---------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise expects it even when serving from finders
# Serve straight from the source folders so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "media/"

LANGUAGE_CODE = "en-us"
# The admin shows dates as every page does (comfyweb/timefmt.py), not as the locale would.
FORMAT_MODULE_PATH = ["comfyweb.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Logging: one JSON object per line on stderr ------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ConfigError(f"LOG_FORMAT={LOG_FORMAT!r} must be 'json' or 'text'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    # No credential reaches a log line, whoever logs it (comfyweb/log_redaction.py).
    "filters": {"redact": {"()": "comfyweb.log_redaction.RedactSecrets"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default handlers (a console one under DEBUG, mail_admins, and
        # django.server's) print without the filter: its records go to ours instead.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        # redis-py gives this logger a bare stderr handler of its own the first time a
        # pub/sub is made, unless the logger exists already: it does, through ours.
        "push_response": {"handlers": [], "propagate": True},
    },
}
