#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: remote_secret
short_description: Give one cluster's istiod read access to another cluster (Istio remote secret)
description:
  - Makes the B(source) cluster's API available to the B(target) cluster's istiod, like
    C(istioctl create-remote-secret --name <cluster_name> | kubectl apply -f -), in one direction.
    Run it once per direction for multi-primary.
  - In the source cluster, creates the namespace, the service account O(service_account) and the
    read-only RBAC of Istio's C(istio-reader-clusterrole-<namespace>) (see O(manage_rbac)).
  - Requests a B(time-bound) token for that service account from the TokenRequest API
    (O(token_lifetime)); no long-lived service-account token secret is created.
  - In the target cluster, writes Secret C(istio-remote-secret-<cluster_name>) in O(namespace),
    labelled C(istio/multiCluster=true) and annotated C(networking.istio.io/cluster=<cluster_name>),
    C(meshfleet.io/token-expires) and C(meshfleet.io/source-server). Its key C(<cluster_name>) holds a
    kubeconfig with the source server, the source CA inline and the token, and nothing else.
  - Idempotent. A re-run keeps the token (no new TokenRequest) unless the secret is missing or
    malformed, the server, CA or TLS server name changed, the token belongs to another or a
    re-created service account, is not time-bound, expires within O(renew_before) seconds, or the
    source API server no longer accepts it (TokenReview).
  - Tokens never appear in the result or the diff.
  - With O(sources), one run writes a secret for each of several source clusters into the same
    target (what a primary of a multi-primary mesh needs), sharing the target connection;
    the per-source options move into each entry of O(sources).
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
  - meshfleet.mesh.k8s_auth.SOURCE_TARGET
options:
  cluster_name:
    description:
      - Name of the source cluster in the mesh (its Istio cluster ID, C(values.global.multiCluster.clusterName)).
      - A DNS-1123 label. The secret is C(istio-remote-secret-<cluster_name>).
      - One of O(cluster_name) and O(sources) is required.
    type: str
  sources:
    description:
      - Several source clusters for the same target, one secret each, in one run. Mutually
        exclusive with O(cluster_name), O(source_kubeconfig), O(source_context), O(server),
        O(tls_server_name) and O(istiod_remote), which each entry gives for its source; the
        other options apply to every entry.
      - The result then has RV(secrets), one result per entry.
    type: list
    elements: dict
    suboptions:
      cluster_name:
        description: As O(cluster_name).
        type: str
        required: true
      source_kubeconfig:
        description: As O(source_kubeconfig).
        type: path
        required: true
      source_context:
        description: As O(source_context).
        type: str
      server:
        description: As O(server).
        type: str
      tls_server_name:
        description: As O(tls_server_name).
        type: str
      istiod_remote:
        description: As O(istiod_remote).
        type: bool
        default: false
  namespace:
    description:
      - Istio's system namespace. The secret is written there in the target; the service account
        and its RBAC live there in the source. Created when missing, in both clusters.
    type: str
    default: istio-system
  server:
    description:
      - The source API server URL as the target's istiod reaches it.
      - Default is the server of O(source_kubeconfig). Set it when istiod sees the source under
        another address than you do (a load balancer, a private endpoint, a container IP).
    type: str
  tls_server_name:
    description:
      - Server name to verify the source API server's certificate against (C(tls-server-name) in
        the kubeconfig), when O(server) is an address the certificate does not name.
    type: str
  token_lifetime:
    description:
      - Seconds the token is requested for (TokenRequest C(expirationSeconds)). At least 600.
      - The API server may cap it (C(--service-account-max-token-expiration)); the real expiry is
        returned in RV(token_expires) and a warning says so.
      - Default 30 days.
    type: int
    default: 2592000
  renew_before:
    description:
      - Renew the token on a run that finds it expiring within this many seconds.
      - Default is a third of O(token_lifetime) (10 days for the default lifetime), so the secret
        stays valid when the playbook runs at least every O(token_lifetime) - O(renew_before) seconds.
      - A value of O(token_lifetime) or more renews on every run.
    type: int
  service_account:
    description:
      - Service account in the source cluster whose token istiod uses.
    type: str
    default: istio-reader-service-account
  manage_rbac:
    description:
      - Create the namespace, service account, ClusterRole and ClusterRoleBinding in the source.
      - When a ClusterRole already bound to the service account grants the reader rules (Istio's
        chart installed there), nothing is created. Otherwise Meshfleet creates
        C(istio-reader-clusterrole-<namespace>) (role and binding, as the chart names them), or
        C(meshfleet-istio-reader-clusterrole-<namespace>) when an object of the chart's name exists
        that Meshfleet does not manage and that lacks rules.
      - When false, the service account must exist already; RBAC is not checked.
    type: bool
    default: true
  istiod_remote:
    description:
      - Also grant the rules Istio's chart adds for the C(remote) profile (C(istiodRemote.enabled)) -
        write C(configmaps), update and patch the injection and validation webhook configurations.
        Needed when the source is a remote cluster whose control plane is the target's istiod.
    type: bool
    default: false
  remove_reader:
    description:
      - With O(state=absent), also delete from the source the service account and RBAC that
        Meshfleet created (objects labelled C(app.kubernetes.io/managed-by=meshfleet)). Deleting the
        service account invalidates every token it was issued.
      - Needs O(source_kubeconfig).
    type: bool
    default: false
  state:
    description:
      - C(present) writes or renews the secret; C(absent) deletes it from the target. Deleting the
        secret does not revoke the token; it stays valid until it expires, unless O(remove_reader).
    type: str
    default: present
    choices: [present, absent]
notes:
  - O(source_kubeconfig) is required with O(state=present) and with O(remove_reader).
  - The source kubeconfig's CA goes into the secret; when it has none (a public CA, or
    C(insecure-skip-tls-verify)), the source cluster's C(kube-system/kube-root-ca.crt) is used.
  - Each renewal makes istiod rebuild its client for the source cluster (the secret's content
    changed), which is why tokens are not renewed needlessly.
  - See docs/remote-secrets.md for the RBAC rules and a comparison with C(istioctl create-remote-secret).
seealso:
  - name: Istio multi-primary install
    description: Where remote secrets fit in a multicluster install.
    link: https://istio.io/latest/docs/setup/install/multicluster/multi-primary/
attributes:
  check_mode:
    description: Reports whether the secret would be created or renewed and which source objects would be
      created, without writing anything or requesting a token.
    support: full
  diff_mode:
    description: Shows the secret's metadata and kubeconfig before and after, with the token replaced by
      C(<redacted, expires ...>).
    support: full
'''

EXAMPLES = r'''
- name: Every other cluster's secret into cluster1, in one run
  meshfleet.mesh.remote_secret:
    sources:
      - cluster_name: cluster2
        source_kubeconfig: "{{ state_dir }}/clusters/cluster2/kubeconfig"
      - cluster_name: cluster3
        source_kubeconfig: "{{ state_dir }}/clusters/cluster3/kubeconfig"
        server: https://10.77.1.10:6443
    target_kubeconfig: "{{ state_dir }}/clusters/cluster1/kubeconfig"

- name: Let cluster2's istiod read cluster1 (multi-primary needs the other direction too)
  meshfleet.mesh.remote_secret:
    cluster_name: cluster1
    source_kubeconfig: "{{ state_dir }}/clusters/cluster1/kubeconfig"
    target_kubeconfig: "{{ state_dir }}/clusters/cluster2/kubeconfig"

- name: Multi-primary, both directions, renewing tokens that expire within 10 days
  meshfleet.mesh.remote_secret:
    cluster_name: "{{ item.source }}"
    source_kubeconfig: "{{ state_dir }}/clusters/{{ item.source }}/kubeconfig"
    target_kubeconfig: "{{ state_dir }}/clusters/{{ item.target }}/kubeconfig"
    token_lifetime: "{{ 30 * 86400 }}"
    renew_before: "{{ 10 * 86400 }}"
  loop:
    - {source: cluster1, target: cluster2}
    - {source: cluster2, target: cluster1}

- name: Primary-remote, source API server reached by istiod through a private endpoint
  meshfleet.mesh.remote_secret:
    cluster_name: remote1
    source_kubeconfig: /srv/mesh/.meshfleet/clusters/remote1/kubeconfig
    target_kubeconfig: /srv/mesh/.meshfleet/clusters/primary1/kubeconfig
    server: https://10.20.0.4:6443
    tls_server_name: kubernetes.default.svc
    istiod_remote: true

- name: Force a new token now (renew_before >= token_lifetime)
  meshfleet.mesh.remote_secret:
    cluster_name: cluster1
    source_kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    target_kubeconfig: /srv/mesh/.meshfleet/clusters/cluster2/kubeconfig
    renew_before: 2592000

- name: Remove the secret and the reader account Meshfleet made (revokes its tokens)
  meshfleet.mesh.remote_secret:
    cluster_name: cluster1
    source_kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    target_kubeconfig: /srv/mesh/.meshfleet/clusters/cluster2/kubeconfig
    state: absent
    remove_reader: true
'''

RETURN = r'''
module_args:
  description: The arguments the module ran with (defaults filled in, C(no_log) values masked);
    C(site.yml) records them in the converge receipt (M(meshfleet.mesh.converge_receipt)).
  returned: success
  type: dict
secrets:
  description: With O(sources), the result of each entry (the fields below), in order.
  returned: when O(sources) is given
  type: list
  elements: dict
secret_name:
  description: Name of the secret in the target cluster.
  returned: always
  type: str
  sample: istio-remote-secret-cluster1
namespace:
  description: Namespace of the secret (and of the service account in the source).
  returned: always
  type: str
  sample: istio-system
cluster_name:
  description: The source cluster's name in the mesh.
  returned: always
  type: str
  sample: cluster1
token_expires:
  description:
    - When the token in the secret expires (RFC 3339, UTC). In check mode, for a renewal, the expiry a
      token requested now would have. Null with O(state=absent).
  returned: always
  type: str
  sample: "2026-12-25T17:52:30Z"
renewed:
  description: Whether a new token was requested (or would be, in check mode); with O(sources),
    whether any was.
  returned: always
  type: bool
reason:
  description:
    - Why the secret changed or not. C(created), C(expiring), C(expired), C(server changed),
      C(ca changed), C(tls server name changed), C(service account changed), C(service account re-created),
      C(not time-bound), C(token rejected), C(malformed - ...) (comma-separated when several), C(metadata changed)
      (labels or annotations fixed, token kept), C(unchanged); C(deleted) or C(absent) for O(state=absent).
  returned: always
  type: str
  sample: unchanged
server:
  description: The source API server URL written into the secret. Null with O(state=absent).
  returned: always
  type: str
  sample: https://10.20.0.4:6443
reader:
  description: The service account and RBAC in the source cluster.
  returned: with O(state=present), and with O(remove_reader)
  type: dict
  contains:
    service_account: {description: Service account name., type: str}
    namespace: {description: Its namespace., type: str}
    cluster_roles:
      description: ClusterRoles that grant it the reader rules.
      type: list
      elements: str
    managed: {description: Whether Meshfleet manages those ClusterRoles (false when Istio's chart does)., type: bool}
    actions:
      description: What was (or, in check mode, would be) created, updated or deleted in the source.
      type: list
      elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import RemoteSecretModule


def main():
    RemoteSecretModule()()


if __name__ == "__main__":
    main()
