# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A ``kubernetes`` Python client for one cluster, with errors a user can act on.

:class:`KubeCluster` builds an ``ApiClient`` from a kubeconfig path and an optional
context (never from ``~/.kube/config`` implicitly) and runs API calls through
:meth:`KubeCluster.call`, which turns the client's exceptions into one
:class:`~.base.MeshfleetError` whose message names the cluster (``source``,
``target``, a cluster name...), its API server URL and what was being done::

    src = KubeCluster(params["source_kubeconfig"], params["source_context"], label="source")
    sa = src.call("read service account istio-system/reader",
                  src.core.read_namespaced_service_account, "reader", "istio-system",
                  not_found=None)

- unreachable server -> "source cluster (https://...) is unreachable while ...: <reason>"
- 401 -> "... rejected the credentials of <kubeconfig>"
- 403 -> "... forbidden: <the API server's message>"
- 404 -> returns ``not_found`` when given (``None`` is a valid value), else an error.

Error messages never include request bodies, so a token sent to the API server does
not end up in a result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    import urllib3
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config import kube_config
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - the toolkit's venv has it
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = e
    urllib3 = k8s = kube_config = None

    class ApiException(Exception):
        pass

    class ConfigException(Exception):
        pass

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import api_error, status_message

_NOT_GIVEN = object()

#: (connect, read) seconds for each API call
DEFAULT_TIMEOUT = (10, 60)


def _status_message(exc):
    """The ``message`` of the Kubernetes Status body of an ApiException, else the HTTP reason."""
    return status_message(getattr(exc, "body", None), getattr(exc, "status", ""), getattr(exc, "reason", ""))


def _network_reason(exc):
    """Short reason of a urllib3 error: the innermost cause, without object reprs."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # NewConnectionError: "<...HTTPSConnection object at 0x..>: Failed to establish a new
    # connection: [Errno 111] Connection refused" -> keep the part a human reads.
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1].strip()
    return text


class KubeCluster:
    """One cluster's API client; ``label`` names it in error messages."""

    def __init__(self, kubeconfig, context=None, label="cluster", option="kubeconfig",
                 timeout=DEFAULT_TIMEOUT):
        if not HAS_KUBERNETES:
            raise MeshfleetError("the kubernetes Python library is required (pip install kubernetes): %s"
                                 % KUBERNETES_IMPORT_ERROR)
        self.label = label
        self.kubeconfig = kubeconfig
        self.context = context
        self.timeout = timeout
        if not kubeconfig:
            raise MeshfleetError("%s: no kubeconfig given (set %s)" % (self._name(), option))
        path = os.path.expanduser(kubeconfig)
        if not os.path.isfile(path):
            raise MeshfleetError("%s kubeconfig %s does not exist or is not a file (%s)"
                                 % (label, kubeconfig, option))
        configuration = k8s.Configuration()
        try:
            kube_config.load_kube_config(config_file=path, context=context,
                                         client_configuration=configuration, persist_config=False)
        except ConfigException as e:
            raise MeshfleetError("%s kubeconfig %s%s is not usable: %s" % (
                label, kubeconfig, " (context %s)" % context if context else "", e))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise MeshfleetError("%s kubeconfig %s is malformed: %s: %s"
                                 % (label, kubeconfig, type(e).__name__, e))
        # One retry at most: an unreachable server should fail fast and clearly.
        configuration.retries = 1
        self.configuration = configuration
        self.server = configuration.host
        self.api_client = k8s.ApiClient(configuration)
        self._apis = {}

    # --- API groups -----------------------------------------------------------------
    def _api(self, cls):
        if cls not in self._apis:
            self._apis[cls] = cls(self.api_client)
        return self._apis[cls]

    @property
    def core(self):
        return self._api(k8s.CoreV1Api)

    @property
    def rbac(self):
        return self._api(k8s.RbacAuthorizationV1Api)

    @property
    def authn(self):
        return self._api(k8s.AuthenticationV1Api)

    @property
    def authz(self):
        return self._api(k8s.AuthorizationV1Api)

    def ca_pem(self):
        """The CA bundle this kubeconfig trusts for its server (PEM text), or None."""
        path = self.configuration.ssl_ca_cert
        if path:
            try:
                with open(path, "r") as f:
                    return f.read()
            except (IOError, OSError) as e:
                raise MeshfleetError("%s kubeconfig %s: cannot read its certificate authority %s: %s"
                                     % (self.label, self.kubeconfig, path, e))
        return None

    # --- calls ------------------------------------------------------------------------
    def _name(self):
        return "%s cluster (%s)" % (self.label, getattr(self, "server", None) or self.kubeconfig)

    def call(self, what, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with a timeout; errors become :class:`MeshfleetError`.

        ``what`` says what the call does ("create secret istio-system/x"). Pass
        ``not_found=<value>`` to get that value back on HTTP 404 instead of an error.
        """
        not_found = kwargs.pop("not_found", _NOT_GIVEN)
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            status = getattr(e, "status", None)
            if status == 404 and not_found is not _NOT_GIVEN:
                return not_found
            raise self.api_error(what, e)
        except urllib3.exceptions.HTTPError as e:
            raise MeshfleetError(
                "%s is unreachable while trying to %s: %s (check the kubeconfig %s%s)" % (
                    self._name(), what, _network_reason(e), self.kubeconfig,
                    " and context %s" % self.context if self.context else ""),
                cluster=self.label, server=self.server)

    def api_error(self, what, exc):
        return api_error(self._name(), self.kubeconfig, what, getattr(exc, "status", None), _status_message(exc),
                         cluster=self.label, server=self.server)
