# -*- coding: utf-8 -*-
"""Test fakes for the cloud and laptop providers.

- ``aws``: moto in server mode on 127.0.0.1 (a free port), real boto3 clients.
- ``azure_transport``: ``FakeArm``, a model of ARM (AKS) enforcing its rules, and an azure-core
  ``HttpTransport`` adapter in front of it.
- ``gcp_http``: a stateful fake of the GKE v1 REST API behind requests-mock.
- ``openstack_http``: a stateful fake keystone/nova/neutron/glance behind requests-mock.
- ``minikube``: a fake ``minikube`` executable (Python) that records its arguments.
- ``modrun``: run a module's ``main()`` with ``patch_module_args`` and read its JSON.

Import them as ``ansible_collections.meshfleet.mesh.tests.fakes.<name>`` (the repo root is
the collection root; tests put ``collections/`` on ``sys.path``).
"""
