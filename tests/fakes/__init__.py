# -*- coding: utf-8 -*-
"""Test fakes for the cloud and laptop providers.

- ``aws``: moto in server mode on 127.0.0.1 (a free port) behind an EKS rule layer
  (``EksRules``: timing, refusals, injected failures, request log), real boto3 clients.
- ``azure_transport``: ``FakeArm``, a model of ARM (AKS) enforcing its rules, and an azure-core
  ``HttpTransport`` adapter in front of it.
- ``gcp_http``: a stateful model of the GKE v1 REST API (``FakeGke.handle``), served through
  requests-mock (``install``) or a real HTTP server on 127.0.0.1 (``serve``).
- ``openstack_http``: a stateful fake keystone/nova/neutron/glance behind requests-mock.
- ``minikube``: a fake ``minikube`` executable (Python) that records its arguments.
- ``modrun``: run a module's ``main()`` with ``patch_module_args`` and read its JSON.

Import them as ``ansible_collections.meshfleet.mesh.tests.fakes.<name>`` (the repo root is
the collection root; tests put ``collections/`` on ``sys.path``).
"""
