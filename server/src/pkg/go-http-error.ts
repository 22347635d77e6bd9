/**
 * Go's net/http `Error`, as etcd's HTTP handlers answer with it: the text and a newline, as
 * text/plain the client must not sniff. One writer, so that every port (client, peer, metrics,
 * the gateway, v2) answers its plain-text errors byte for byte as etcd 3.4 does.
 */
import type { ServerResponse } from "node:http";

/**
 * Writes the error and ends the response. Returns false, writing nothing, when the response can
 * no longer take one (its headers went out, or it was destroyed); the caller decides what then.
 */
export function goHttpError(res: ServerResponse, status: number, text: string): boolean {
  if (res.headersSent || res.destroyed) return false;
  res.statusCode = status;
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.end(`${text}\n`);
  return true;
}

/** Go's 405 for a method a handler does not take: `Allow` lists those it does. */
export function goMethodNotAllowed(res: ServerResponse, allow: string): boolean {
  if (res.headersSent || res.destroyed) return false;
  res.setHeader("Allow", allow);
  return goHttpError(res, 405, "Method Not Allowed");
}
