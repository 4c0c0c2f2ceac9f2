#!/usr/bin/env python3
"""The bare client of bench/requests.sh: for each DEPLOY/CONTAINER=IMAGE in turn, one PATCH of the
image and one watch of that deployment until kubectl's rollout-complete test holds. Reads the
apiserver, token and CA from REALKUBE_SERVER, REALKUBE_TOKEN_FILE, REALKUBE_CA (tests/realkube's
env file). User agent `bare-client/1`.

    bare_client.py NAMESPACE DEPLOY/CONTAINER=IMAGE...
"""
import json, os, ssl, sys, urllib.request

server, ca = os.environ["REALKUBE_SERVER"], os.environ["REALKUBE_CA"]
token = open(os.environ["REALKUBE_TOKEN_FILE"]).read().strip()
ctx = ssl.create_default_context(cafile=ca)
ns = sys.argv[1]


def call(method, path, body=None, ctype=None):
    req = urllib.request.Request(server + path, method=method, data=body)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("User-Agent", "bare-client/1")
    if ctype:
        req.add_header("Content-Type", ctype)
    return urllib.request.urlopen(req, context=ctx, timeout=300)


def complete(d):
    s, want = d.get("status", {}), d["spec"].get("replicas", 1)
    n = lambda k: s.get(k, 0)
    return (d["metadata"].get("generation", 0) <= n("observedGeneration") and n("updatedReplicas") >= want
            and n("replicas") <= n("updatedReplicas") and n("availableReplicas") >= n("updatedReplicas"))


for t in sys.argv[2:]:
    name, image = t.split("=", 1)
    deploy, container = name.split("/")
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
    d = json.load(call("PATCH", f"{base}/{deploy}", json.dumps(patch).encode(),
                       "application/strategic-merge-patch+json"))
    if complete(d):
        continue
    rv = d["metadata"]["resourceVersion"]
    with call("GET", f"{base}?watch=1&fieldSelector=metadata.name%3D{deploy}&resourceVersion={rv}&timeoutSeconds=300") as w:
        for line in w:
            ev = json.loads(line)
            if ev["type"] in ("ADDED", "MODIFIED") and complete(ev["object"]):
                break
