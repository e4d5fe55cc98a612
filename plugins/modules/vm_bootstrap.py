#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vm_bootstrap
short_description: The files a VM needs to join the mesh (istioctl x workload entry configure)
description:
  - Writes into O(dest) on the controller what C(istioctl x workload entry configure -f wg.yaml -o
    <dest> --clusterID <id> --autoregister) writes, computed in Python with the same keys and
    meanings; C(cluster.env), C(mesh.yaml), C(root-cert.pem), C(istio-token) and C(hosts).
  - C(cluster.env) holds the proxy metadata plus C(ISTIO_INBOUND_PORTS), C(ISTIO_NAMESPACE),
    C(ISTIO_SERVICE=<group>.<namespace>), C(ISTIO_SERVICE_CIDR=*),
    C(ISTIO_LOCAL_EXCLUDE_PORTS=22,15090,15021,15020) and C(SERVICE_ACCOUNT), sorted and quoted
    exactly as istioctl does.
  - C(mesh.yaml) is C(defaultConfig) of the cluster's C(istio) mesh ConfigMap with the proxy
    metadata (C(ISTIO_META_CLUSTER_ID), C(ISTIO_META_MESH_ID), C(ISTIO_META_NETWORK),
    C(ISTIO_META_DNS_CAPTURE), C(ISTIO_META_AUTO_REGISTER_GROUP), canonical service and revision,
    labels, pod ports, trust domain), the WorkloadGroup's probe and C(proxy.istio.io/config)
    annotations.
  - C(root-cert.pem) comes from the C(istio-ca-root-cert) ConfigMap of the group's namespace, else
    of O(istio_namespace). C(hosts) maps C(istiod.<istio_namespace>.svc) to O(ingress_ip), else to
    the address of the east-west gateway Service O(ingress_service).
  - C(istio-token) is a TokenRequest token of the group's service account, audience C(istio-ca),
    valid O(token_lifetime) seconds. It is only needed for the VM's first certificate signing
    request. After that the agent authenticates with its own certificate (written to and read
    from C(/etc/certs) on the VM) and renews it at half life. A new token is requested only when there
    is none, it is malformed, for another or a re-created service account, for another audience,
    expired, or expires within O(renew_before) seconds (its C(exp) claim is decoded).
  - Idempotent; every file is rewritten only when its content changes. The token never appears
    in the result or the diff (a redacted line with its expiry does).
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
options:
  dest:
    description:
      - Folder on the controller for the files, for example C(<state_dir>/vms/<vm>/bootstrap).
        Created with mode 0700; files are 0600.
    type: path
    required: true
  kubeconfig:
    description:
      - Kubeconfig of the cluster the VM joins (the WorkloadGroup's cluster). Required with
        O(state=present). Never taken implicitly from C(KUBECONFIG).
    type: path
  context:
    description: Context of O(kubeconfig). Default is its C(current-context).
    type: str
  name:
    description:
      - Name of an existing WorkloadGroup (like C(istioctl ... --name)). With O(workload_group),
        the default for its C(metadata.name).
    type: str
  namespace:
    description: Namespace of the WorkloadGroup and of the VM's workload.
    type: str
  workload_group:
    description:
      - A WorkloadGroup definition (like C(istioctl ... -f wg.yaml)) instead of reading it from the
        cluster. The service account still has to exist in the cluster.
    type: dict
  cluster_id:
    description:
      - Istio cluster ID (C(ISTIO_META_CLUSTER_ID)). Default is
        C(values.global.multiCluster.clusterName) of the C(istio-sidecar-injector) ConfigMap, as
        istioctl reads it.
    type: str
  istio_namespace:
    description: Istio's system namespace.
    type: str
    default: istio-system
  revision:
    description: Istio revision (C(istiod-<revision>), C(istio-<revision>) mesh ConfigMap).
    type: str
    default: ""
  discovery_port:
    description:
      - Port of istiod's xDS and CA endpoint as the VM reaches it (C(discoveryAddress)
        C(istiod.<istio_namespace>.svc:<port>)). Default is the mesh config's address (15012).
      - When not 15012, C(cluster.env) also gets C(CA_ADDR) with that port, since Istio's
        C(istio-start.sh) would otherwise send the certificate request to 15012.
    type: int
  ingress_ip:
    description:
      - Address the VM reaches istiod at (written to C(hosts)). Default is the first load-balancer
        IP, else external IP, of O(ingress_service).
    type: str
  ingress_service:
    description: The east-west gateway Service, C(<name>) or C(<name>.<namespace>).
    type: str
    default: istio-eastwestgateway
  internal_ip:
    description: The VM's internal address (C(ISTIO_SVC_IP)).
    type: str
  external_ip:
    description:
      - The VM's external address (C(ISTIO_SVC_IP) and C(REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION)).
    type: str
  auto_register:
    description: Set C(ISTIO_META_AUTO_REGISTER_GROUP) so istiod creates the VM's WorkloadEntry.
    type: bool
    default: true
  dns_capture:
    description: Set C(ISTIO_META_DNS_CAPTURE=true) (istioctl's C(--capture-dns), default on).
    type: bool
    default: true
  proxy_metadata:
    description: Extra proxy metadata (environment of the agent), added to both files.
    type: dict
    default: {}
  token_lifetime:
    description:
      - Seconds the token is valid (TokenRequest C(expirationSeconds)), at least 600. The default
        is istioctl's hour; the token only has to outlive the VM's first start, and every run of
        the role renews it once it is within O(renew_before) of its expiry. Longer lifetimes let an
        agent whose certificate expired (VM off for more than the certificate's 24 hours) get a new
        one without a run, at the cost of a longer-lived credential on the VM.
    type: int
    default: 3600
  renew_before:
    description: Renew the token when it expires within this many seconds.
    type: int
    default: 1200
  force_token:
    description: Request a new token even if the stored one is still good.
    type: bool
    default: false
  state:
    description: C(absent) deletes O(dest).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (no token is requested) and diff (the token redacted).
seealso:
  - name: istioctl x workload entry configure
    description: The command this module reproduces.
    link: https://istio.io/latest/docs/reference/commands/istioctl/#istioctl-experimental-workload-entry-configure
'''

EXAMPLES = r'''
- name: Bootstrap files of vm1 (WorkloadGroup web in vm-web on cluster1)
  meshfleet.mesh.vm_bootstrap:
    kubeconfig: "{{ meshfleet_state_dir }}/clusters/cluster1/kubeconfig"
    name: web
    namespace: vm-web
    cluster_id: cluster1
    ingress_ip: 10.77.0.1
    discovery_port: 20034
    dest: "{{ meshfleet_state_dir }}/vms/vm1/bootstrap"
  delegate_to: localhost
'''

RETURN = r'''
bootstrap_dir:
  description: The folder (O(dest)).
  returned: always
  type: str
files:
  description: Path of each file (cluster.env, mesh.yaml, root-cert.pem, istio-token, hosts).
  returned: with O(state=present)
  type: dict
changed_files:
  description: The files that changed (or would).
  returned: with O(state=present)
  type: list
  elements: str
workload_group:
  description: Name, namespace and service account of the WorkloadGroup.
  returned: with O(state=present)
  type: dict
cluster_id:
  description: The cluster ID written.
  returned: with O(state=present)
  type: str
discovery_address:
  description: The C(discoveryAddress) written to mesh.yaml.
  returned: with O(state=present)
  type: str
  sample: istiod.istio-system.svc:15012
hosts_address:
  description: The address written to C(hosts) (None when not found).
  returned: with O(state=present)
  type: str
token_renewed:
  description: Whether a new token was requested.
  returned: with O(state=present)
  type: bool
token_reason:
  description: Why a token was (or would be) requested; None when the stored one was kept.
  returned: with O(state=present)
  type: str
token_expires:
  description: Expiry of the token in the folder (RFC 3339).
  returned: with O(state=present)
  type: str
  sample: "2026-11-25T19:10:00Z"
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_bootstrap import VmBootstrapModule


def main():
    VmBootstrapModule()()


if __name__ == "__main__":
    main()
