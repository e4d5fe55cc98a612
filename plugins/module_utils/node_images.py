# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.node_images module: the mesh's images (module_utils/images/) present in a
node's containerd, built into the image cache when missing and imported with ``ctr``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, catalog, containerd
from ansible_collections.meshfleet.mesh.plugins.module_utils.images.spec import DEFAULT_HUB, SpecError
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import ISTIO_DEFAULT_RELEASE


class NodeImagesModule(MeshfleetModule):
    argument_spec = dict(
        address=dict(type="path", required=True),
        namespace=dict(type="str", default="k8s.io"),
        images=dict(type="list", elements="str", default=list(catalog.NAMES)),
        tools_bin=dict(type="path"),
        istio_share=dict(type="path"),
        envoy=dict(type="path"),
        rootfs=dict(type="path"),
        hub=dict(type="str", default=DEFAULT_HUB),
        istio_version=dict(type="str", default=ISTIO_DEFAULT_RELEASE),
        cache_dir=dict(type="path"),
        ctr=dict(type="path", default="ctr"),
    )

    def observe(self):
        p = self.params
        try:
            specs = catalog.standard(tools_bin=p["tools_bin"], envoy=p["envoy"], rootfs=p["rootfs"],
                                     istio_share=p["istio_share"], hub=p["hub"], version=p["istio_version"],
                                     names=p["images"])
            planned = builder.resolve(specs, p["cache_dir"])
        except (ValueError, builder.BuildError) as e:  # SpecError is a ValueError
            field = "images"
            if isinstance(e, SpecError):  # "image <name>: <spec field>: ..."
                field = dict(version="istio_version", hub="hub").get(str(e).split(": ")[1], "images")
            raise MeshfleetError("%s: %s" % (field, e))
        try:
            present = containerd.list_images(p["address"], p["namespace"], p["ctr"])
        except containerd.ContainerdError as e:
            raise MeshfleetError(str(e))
        return dict(planned=planned, present=present)

    def plan(self, observed):
        present = observed["present"]
        self.status = {}
        plan = Plan(before={}, after={})
        for pl in observed["planned"]:
            have = present.get(pl.ref)
            want = pl.meta()["digest"] if pl.cached else None
            plan.before[pl.name] = "%s@%s" % (pl.ref, have) if have else None
            plan.after[pl.name] = "%s@%s" % (pl.ref, want or have or "(to build)")
            # the tag carries the input digest: a containerd that lists the ref has these inputs
            # (its digest is checked against the archive's when the archive is in the cache)
            if have and (want is None or want == have):
                self.status[pl.name] = dict(status="present", digest=have)
                continue
            self.status[pl.name] = dict(status="missing", digest=want)
            how = "import" if pl.cached else "build and import"
            plan.add("%s %s into containerd at %s" % (how, pl.ref, self.params["address"]), self._importer(pl))
        return plan

    def _importer(self, pl):
        def run():
            try:
                built = builder.build_planned(pl)
                done = containerd.import_images(self.params["address"], [built["archive"]],
                                                self.params["namespace"], self.params["ctr"])[0]
            except (builder.BuildError, containerd.ContainerdError) as e:
                raise MeshfleetError("image %s: %s" % (pl.name, e))
            self.status[pl.name] = dict(status="imported" if done["imported"] else "present",
                                        digest=done["digest"])
        return run

    def result(self, observed, plan):
        images = []
        for pl in observed["planned"]:
            st = self.status[pl.name]
            images.append(dict(name=pl.name, ref=pl.ref, tag=pl.tag, digest=st["digest"],
                               archive=pl.archive if pl.cached else None, status=st["status"]))
        return dict(images=images, refs=dict((i["name"], i["ref"]) for i in images),
                    address=self.params["address"])
