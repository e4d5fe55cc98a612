# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What the modules' Kubernetes client (plugins/module_utils/kube_rest.py) reads of a kubeconfig,
    # for every module that reads one; keep in step with its docstring and
    # tests/unit/plugins/module_utils/test_kube_rest_proxy.py. (A fragment needs options: none here.)
    DOCUMENTATION = r'''
options: {}
notes:
  - The kubeconfig is read by Meshfleet's own Kubernetes client (C(plugins/module_utils/kube_rest.py)),
    not by the C(kubernetes) Python package. It supports these fields, as kubectl reads them.
    Cluster - C(server) (C(https://), or C(http://)), C(certificate-authority) or
    C(certificate-authority-data) (only that CA is trusted; without one, the system's CAs),
    C(insecure-skip-tls-verify), C(tls-server-name), C(proxy-url), C(disable-compression) (the
    client never asks for compressed answers). User - C(client-certificate) and C(client-key)
    (files or C(-data)), C(token), C(tokenFile) (wins over C(token)), C(username) and C(password)
    (basic auth), C(exec) credential plugins (C(client.authentication.k8s.io/v1) and C(v1beta1),
    with C(env), C(provideClusterInfo); the credential is kept until its C(expirationTimestamp)
    and fetched again after a 401), and impersonation C(as), C(as-uid), C(as-groups),
    C(as-user-extra) (sent as C(Impersonate-*) headers).
  - Proxies - C(proxy-url) must be an C(http://) proxy (user and password in the URL are sent as
    C(Proxy-Authorization)); https servers are reached through C(CONNECT). Without C(proxy-url),
    C(HTTPS_PROXY) or C(https_proxy) (C(HTTP_PROXY) or C(http_proxy) for an C(http://) server)
    is used unless C(NO_PROXY) or C(no_proxy) matches the server - a host name matches itself and
    its subdomains, C(.example.com) or C(*.example.com) only subdomains, an IP address itself, a
    CIDR the addresses in it, an optional C(:port) only that port, and C(*) everything. Like
    kubectl, C(localhost) and loopback addresses never use a proxy from the environment.
  - Refused with an error naming the field, never ignored - C(auth-provider) (the in-tree gcp,
    azure and oidc providers; use an exec plugin such as C(gke-gcloud-auth-plugin) or
    C(kubelogin)), a C(proxy-url) or proxy variable of another scheme (C(https://),
    C(socks5://)), a client certificate without its key or a key without its certificate, a
    token together with a username and password, C(as-uid), C(as-groups) or C(as-user-extra)
    without C(as), and exec plugins with C(interactiveMode) C(Always) (modules have no terminal).
  - Errors name the cluster, its API server URL (and the proxy, when one is used) and what was
    being done; connecting and each answer time out after 30 seconds.
'''

    # One cluster: kubeconfig and context (with meshfleet.mesh.k8s_auth for the notes).
    KUBECONFIG = r'''
options:
  kubeconfig:
    description:
      - Path of the kubeconfig file of the cluster, for example the one
        M(meshfleet.mesh.cluster) writes to C(<state_dir>/clusters/<name>/kubeconfig).
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
      - The fields it may use are listed in the notes.
    type: path
    required: true
  context:
    description:
      - Context of O(kubeconfig) to use. Default is its C(current-context).
    type: str
'''

    # Two clusters: the one read (source) and the one written (target) (with meshfleet.mesh.k8s_auth).
    SOURCE_TARGET = r'''
options:
  source_kubeconfig:
    description:
      - Path of the kubeconfig of the B(source) cluster, the one being read.
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
      - The fields it may use are listed in the notes.
    type: path
  source_context:
    description:
      - Context of O(source_kubeconfig) to use. Default is its C(current-context).
    type: str
  target_kubeconfig:
    description:
      - Path of the kubeconfig of the B(target) cluster, the one written to.
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
      - The fields it may use are listed in the notes.
    type: path
    required: true
  target_context:
    description:
      - Context of O(target_kubeconfig) to use. Default is its C(current-context).
    type: str
'''
