# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.vm_instance and vm_instance_info modules: a VM group's instances through
its provider (the interface: module_utils/vm_providers/base.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import ImmutableChange, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import (
    VM_ARGS, make_vm_provider, public_view)


def _sorted(instances):
    return sorted(instances, key=lambda i: (i.get("name") or "", i.get("id") or ""))


class VmInstanceModule(MeshfleetModule):
    argument_spec = dict(VM_ARGS, state=dict(type="str", default="present",
                                             choices=["present", "absent"]))
    with_wait = True

    def observe(self):
        self.provider = make_vm_provider(self, self.params)
        return _sorted(self.provider.list())

    def _timeout(self):
        return self.params["wait_timeout"]

    def plan(self, observed):
        existing = observed
        provider = self.provider
        before = dict(instances=[public_view(i) for i in existing])
        if self.params["state"] == "absent":
            self.fields = dict(instances=[])
            plan = Plan(before, dict(instances=[]))
            if existing:
                self.fields["removed"] = [i["name"] for i in existing]
                plan.add("delete %s" % ", ".join(self.fields["removed"]), lambda: self._delete(existing))
            return plan
        wanted = provider.desired_names()
        by_name = {}
        extra = []
        for inst in existing:
            if inst["name"] in wanted and inst["name"] not in by_name:
                by_name[inst["name"]] = inst
            else:
                extra.append(inst)
        for name in wanted:
            if name in by_name:
                fields = provider.immutable_changes(by_name[name])
                if fields:
                    raise ImmutableChange(fields, resource="VM %s" % name)
        missing = [n for n in wanted if n not in by_name]
        prepare = list(provider.prepare(apply=False)) if (missing or by_name) else []
        fixes = dict((n, provider.reconcile(by_name[n], apply=False)) for n in wanted if n in by_name)
        fixes = dict((n, a) for n, a in fixes.items() if a)
        planned = [public_view(by_name[n]) if n in by_name else dict(name=n, id=None, status="planned")
                   for n in wanted]
        self.fields = dict(created=missing, removed=[i["name"] for i in extra],
                           actions=prepare + [a for n in sorted(fixes) for a in fixes[n]], instances=planned)
        plan = Plan(before, dict(instances=planned))
        if missing or extra or prepare or fixes:
            plan.add("; ".join(["create %s" % n for n in missing] + ["remove %s" % i["name"] for i in extra]
                               + self.fields["actions"]),
                     lambda: self._converge(plan, wanted, by_name, missing, extra, prepare, fixes))
        return plan

    def _delete(self, existing):
        for inst in existing:
            self.provider.delete(inst)
        if self.params["wait"]:
            self.provider.wait_deleted([i["id"] for i in existing], self._timeout())
            self.provider.cleanup()

    def _converge(self, plan, wanted, by_name, missing, extra, prepare, fixes):
        provider = self.provider
        if missing or prepare:
            provider.prepare(apply=True)
        new_ids = [provider.create(name) for name in missing]
        for inst in extra:
            provider.delete(inst)
        if self.params["wait"]:
            if new_ids:
                provider.wait_ready(new_ids, self._timeout())
            if extra:
                provider.wait_deleted([i["id"] for i in extra], self._timeout())
        for name in sorted(fixes):
            provider.reconcile(by_name[name], apply=True)
        now = {i["name"]: i for i in provider.list() if i["name"] in wanted}
        self.fields["instances"] = [public_view(now[n]) for n in wanted if n in now]
        plan.after = dict(instances=self.fields["instances"])

    def result(self, observed, plan):
        return dict(self.fields)


class VmInstanceInfoModule(MeshfleetModule):
    argument_spec = dict(VM_ARGS)

    def observe(self):
        return _sorted(make_vm_provider(self, self.params).list())

    def result(self, observed, plan):
        return dict(instances=[public_view(i) for i in observed])
