/**
 * Writes the operator makes for any of its custom objects: the status subresource, and an event
 * about the object (Kubernetes truncates nothing for us, so messages are cut at 1024 characters).
 */
import type { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../api/v1alpha1.js";
import { withoutEmpty } from "./kube-cluster-store.js";

/** The parts of a custom object these writes need. */
export interface CustomObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string };
}

/** Replaces the object's status (the status subresource), leaving out empty fields. */
export async function replaceStatus(custom: CustomObjectsApi, plural: string, obj: CustomObject, status: object): Promise<void> {
  await custom.replaceNamespacedCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    namespace: obj.metadata.namespace,
    plural,
    name: obj.metadata.name,
    body: { ...obj, status: withoutEmpty(status) },
  });
}

/** Records an event about `obj` from `component`. */
export async function recordEvent(
  core: CoreV1Api,
  component: string,
  obj: CustomObject,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  const now = new Date();
  await core.createNamespacedEvent({
    namespace: obj.metadata.namespace,
    body: {
      metadata: { generateName: `${obj.metadata.name}.`, namespace: obj.metadata.namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.metadata.name,
        namespace: obj.metadata.namespace,
        ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
        ...(obj.metadata.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
      },
      type,
      reason,
      message: message.slice(0, 1024),
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component },
      reportingComponent: component,
    },
  });
}
