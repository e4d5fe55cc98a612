# -*- coding: utf-8 -*-
"""cloudsim: the fake clouds as ONE local process of real HTTP(S) servers, for end-to-end runs.

``python -m ansible_collections.meshfleet.mesh.tests.fakes.cloudsim --work-dir DIR`` (with
``<repo>/collections`` on PYTHONPATH) serves, on 127.0.0.1 only:

- one HTTPS server (a CA made at start, ``<work>/ca.pem``; clients trust it through
  REQUESTS_CA_BUNDLE / SSL_CERT_FILE) with
  - Azure: the AAD v2 endpoints msal needs (``/<tenant>/v2.0/.well-known/openid-configuration``,
    ``/<tenant>/oauth2/v2.0/token``, client-secret grant) and ARM (``/subscriptions/...``,
    the stateful :class:`~..azure_transport.FakeArm` model; the Azure SDK refuses bearer tokens
    over plain http, hence HTTPS);
  - GKE v1 REST (``/v1/projects/...``, :class:`~..gcp_http.FakeGke`) and a Google OAuth2 token
    endpoint (``/google/token``) that verifies the service-account JWT's RS256 signature against
    the key file the sim wrote;
  - OpenStack keystone/nova/neutron/glance under ``/openstack/<service>/`` (the
    :class:`~..openstack_http.FakeOpenStack` model, its URLs rewritten to the sim's);
  - ``/sim/tokenreview/<cluster id>``: the token webhook of every kwok-backed API server, and
    ``GET /sim/inventory``: what is left (clusters, kwok processes, load balancers, VMs).
- moto's ThreadedMotoServer (plain http; EKS, EC2, ELBv2, STS, ...) in the same process; its EKS
  backend is wrapped so a new cluster stays CREATING until its kwok cluster is up.
- with ``--vms`` (root): every EC2 instance and OpenStack server is a netns VM at the address the
  cloud reports, its key pair authorised for the image's default user as cloud-init does
  (``vms.py``); the instance is running/ACTIVE once the VM answers SSH, and deleting it deletes
  the VM. RunInstances then refuses an unknown key pair or AMI, as EC2 does.

Each cloud cluster becomes a real kwok cluster (the project's KwokProvider) whose
kube-apiserver authenticates bearer tokens through the sim's token webhook, the way the
clouds do (AKS user token, GKE OAuth access token, EKS presigned STS URL checked like
aws-iam-authenticator). A fake cloud controller gives ``LoadBalancer`` Services a
127.0.0.x address and a provider load balancer record, with the
``service.kubernetes.io/load-balancer-cleanup`` finalizer.

The endpoints and generated credentials are printed as one JSON line on stdout and written to
``<work>/endpoints.json``. SIGTERM/SIGINT (or the death of ``--parent-pid``) stops every kwok
cluster and server.
"""
