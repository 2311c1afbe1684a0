"""Images derived FROM the base target, exactly as tiangolo's users derive theirs."""

from __future__ import annotations

import shutil

import httpx
from support.apps import SEED_APP
from support.files import write
from support.proc import REPO, startup_json, wait_for

PACKAGE = {"app/app/__init__.py": "", "app/app/main.py": SEED_APP}
SINGLE = {"app/main.py": SEED_APP.replace('{"Hello": "World"}', '{"Hello": "single file"}')}
CONF = 'import os\nprint("custom config: {where}")\nbind = "0.0.0.0:80"\nworkers = 1\n'


def test_base_serves_its_sample_app_as_tiangolos_did(images, run_container):
    c = run_container(images["base"])
    message = c.wait_ready().json()["message"]
    assert message.startswith("Hello world! From FastAPI running on Uvicorn with Gunicorn. Using Python 3.")


def test_no_app_found_once_the_sample_is_removed(derive, run_container):
    c = run_container(derive({}, dockerfile="RUN rm main.py\n"))
    assert c.wait_exit() == 2
    assert c.logs().endswith(
        "ERROR: no app found: put it in /app/app/main.py or /app/main.py, "
        "or set MODULE_NAME (and VARIABLE_NAME) or APP_MODULE\n"
    )


def test_package_layout(derive, run_container):
    c = run_container(derive(PACKAGE))
    assert c.wait_ready().json() == {"Hello": "World"}
    assert c.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}
    assert "There is no script /app/prestart.sh" in c.logs()


def test_single_module_layout(derive, run_container):
    c = run_container(derive(SINGLE))
    assert c.wait_ready().json() == {"Hello": "single file"}


def test_seed_derived_dockerfile_with_its_own_requirements(derive, run_container):
    """The seed's recipe: requirements installed on top of the base (as root, as on tiangolo's image)."""
    dockerfile = (
        "COPY ./requirements.txt /app/requirements.txt\n"
        "RUN pip install --no-cache-dir --upgrade -r /app/requirements.txt\n"
        "COPY ./app /app\n"
    )
    app = (
        SEED_APP
        + '\n\n@app.get("/extra")\ndef extra():\n    import idna\n    return {"idna": idna.__version__}\n'
    )
    c = run_container(
        derive(
            {"requirements.txt": "idna\n", "app/app/__init__.py": "", "app/app/main.py": app},
            dockerfile=dockerfile,
        )
    )
    c.wait_ready()
    assert c.get("/extra").status_code == 200


def test_module_and_variable_name(derive, run_container):
    custom = SEED_APP.replace("app = FastAPI()", "custom_var = FastAPI()").replace("@app.", "@custom_var.")
    image = derive({"app/custom_app/__init__.py": "", "app/custom_app/custom_main.py": custom})
    c = run_container(image, env={"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "custom_var"})
    assert c.wait_ready().json() == {"Hello": "World"}


def test_app_module(derive, run_container):
    custom = SEED_APP.replace("app = FastAPI()", "api = FastAPI()").replace("@app.", "@api.")
    c = run_container(derive({"app/other.py": custom}), env={"APP_MODULE": "other:api"})
    assert c.wait_ready().json() == {"Hello": "World"}


def test_gunicorn_conf_in_app_root(derive, run_container):
    image = derive(
        {
            **PACKAGE,
            "app/gunicorn_conf.py": CONF.format(where="/app"),
            "app/app/gunicorn_conf.py": CONF.format(where="/app/app"),
        }
    )
    c = run_container(image)
    c.wait_ready()
    assert "custom config: /app" in c.logs()
    assert len(c.wait_workers(1)) == 1


def test_gunicorn_conf_in_app_package(derive, run_container):
    c = run_container(derive({**PACKAGE, "app/app/gunicorn_conf.py": CONF.format(where="/app/app")}))
    c.wait_ready()
    assert "custom config: /app/app" in c.logs()
    assert len(c.wait_workers(1)) == 1


def test_gunicorn_conf_variable(derive, run_container):
    image = derive(
        {
            **PACKAGE,
            "app/gunicorn_conf.py": CONF.format(where="/app"),
            "app/custom_gunicorn_conf.py": CONF.format(where="explicit"),
        }
    )
    c = run_container(image, env={"GUNICORN_CONF": "/app/custom_gunicorn_conf.py"})
    c.wait_ready()
    assert "custom config: explicit" in c.logs()
    assert "custom config: /app\n" not in c.logs()


def test_the_base_config_is_readable_as_in_tiangolos_tests(derive, run_container):
    """Their tests run `python /gunicorn_conf.py` in the container and parse the line."""
    c = run_container(derive(PACKAGE), env={"WORKERS_PER_CORE": "2"})
    c.wait_ready()
    from support.dockerutil import docker

    out = docker("exec", c.name, "python", "/gunicorn_conf.py").stdout
    assert startup_json(out)["workers_per_core"] == 2


def test_pre_start_path(derive, run_container):
    files = {
        **PACKAGE,
        "app/app/custom-prestart.sh": 'echo "custom prestart ran"\nexport GREETING=hi\n',
        "app/prestart.sh": 'echo "default prestart ran"\n',
    }
    c = run_container(derive(files), env={"PRE_START_PATH": "/app/app/custom-prestart.sh"})
    c.wait_ready()
    logs = c.logs()
    assert "Checking for script in /app/app/custom-prestart.sh" in logs
    assert "Running script /app/app/custom-prestart.sh" in logs
    assert "custom prestart ran" in logs
    assert "default prestart ran" not in logs


def test_start_reload_follows_source_changes(images, run_container, tmp_path):
    """Development: the source bind-mounted at /app, /start-reload.sh restarts on an edit."""
    shutil.copytree(REPO / "app", tmp_path / "src" / "app")
    source = tmp_path / "src"
    source.chmod(0o755)
    c = run_container(images["base"], args=["-v", f"{source}:/app:ro"], command=["/start-reload.sh"])
    assert c.wait_ready().json() == {"Hello": "World"}
    write(source / "app" / "main.py", SEED_APP.replace('{"Hello": "World"}', '{"Hello": "edited"}'))

    def edited():
        try:
            return c.get("/", timeout=2).json() == {"Hello": "edited"}
        except Exception:  # restarting
            return False

    wait_for(edited, 30, "the reloaded app")
    elapsed = c.stop(timeout=10)
    assert elapsed < 5


def test_start_script_run_by_sh_as_some_entrypoints_do(images, run_container):
    """tiangolo's /start.sh was sh; an ENTRYPOINT or CMD that runs it with sh still starts the server."""
    c = run_container(images["base"], command=["sh", "/start.sh"])
    assert c.wait_ready().status_code == 200
    assert startup_json(c.logs())["worker_class"] == "asgi_launcher.workers.UvicornWorker"


DOCTOR_APP = """\
import os

from fastapi import FastAPI

app = FastAPI()


@app.post("/save")
def save():
    with open("/app/data/saved.txt", "w") as out:  # a directory the Dockerfile copied: root's
        out.write("x")
    return {"saved": True}


@app.post("/save-here")
def save_here():
    with open("saved.txt", "w") as out:  # /app itself: the app user's
        out.write("x")
    return {"saved": True}
"""


def test_a_write_where_the_app_user_may_not_gets_one_line_of_advice(derive, run_container):
    image = derive({"app/main.py": DOCTOR_APP, "app/data/.keep": ""})
    c = run_container(image)
    c.wait_ready("/docs")
    assert httpx.post(c.url + "/save-here").json() == {"saved": True}  # the control: /app is writable
    assert httpx.post(c.url + "/save").status_code == 500
    wait_for(lambda: "HINT:" in c.logs(), 10, "the advice")
    logs = c.logs()
    assert (
        "HINT: the app runs as UID 10001, not root as in tiangolo's image, and may not write "
        "/app/data/saved.txt: give it that path in your Dockerfile (RUN chown 10001 /app/data/saved.txt)"
    ) in logs
    assert (
        "PermissionError: [Errno 13] Permission denied: '/app/data/saved.txt'" in logs
    )  # the traceback stays


def test_an_app_missing_a_package_gets_one_line_of_advice(derive, run_container):
    c = run_container(
        derive({"app/main.py": "import humanize\nfrom fastapi import FastAPI\napp = FastAPI()\n"})
    )
    assert c.wait_exit() == 3
    logs = c.logs()
    assert "HINT: 'humanize' is not installed: add the package that provides it to your requirements" in logs
    assert "ModuleNotFoundError: No module named 'humanize'" in logs
