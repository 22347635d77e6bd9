/**
 * Cron schedules of EtcdBackups, evaluated in UTC with croner (Vixie-cron semantics: 5 fields, or
 * 6 with seconds first; day-of-month and day-of-week ORed as in crontab and Kubernetes CronJobs).
 * Pure: the caller gives the times.
 */
import { Cron } from "croner";

export class ScheduleError extends Error {
  readonly code = "SCHEDULE";
}

export interface Schedule {
  /** The first slot strictly after `after`, or undefined when the pattern never fires again. */
  nextAfter(after: Date): Date | undefined;
}

/** @throws ScheduleError for a pattern croner refuses. */
export function parseSchedule(expr: string): Schedule {
  let cron: Cron;
  try {
    cron = new Cron(expr.trim(), { timezone: "Etc/UTC", paused: true });
  } catch (err) {
    throw new ScheduleError(`spec.schedule ${JSON.stringify(expr)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return {
    nextAfter: (after) => cron.nextRun(after) ?? undefined,
  };
}

/** Most slots looked at to find the latest missed one (older missed slots are skipped, as a CronJob does). */
export const MAX_MISSED_SLOTS = 1000;

/**
 * The latest slot in (since, now], or undefined when none is due. After a long outage only the
 * latest missed slot runs: walks at most MAX_MISSED_SLOTS slots, starting no earlier than a day
 * before `now`.
 */
export function dueSlot(s: Schedule, since: Date, now: Date): Date | undefined {
  const floor = new Date(Math.max(since.getTime(), now.getTime() - 86_400_000));
  let due: Date | undefined;
  let cur = floor;
  for (let i = 0; i < MAX_MISSED_SLOTS; i++) {
    const next = s.nextAfter(cur);
    if (next === undefined || next.getTime() > now.getTime()) break;
    due = next;
    cur = next;
  }
  return due;
}

/**
 * The latest slot at or before `now` within the last day, or undefined (the defragmentation
 * schedule's "which run is due"): looks back an hour first, so frequent schedules stay within
 * MAX_MISSED_SLOTS.
 */
export function latestSlot(s: Schedule, now: Date): Date | undefined {
  for (const windowMs of [60_000, 3_600_000, 86_400_000]) {
    const slot = dueSlot(s, new Date(now.getTime() - windowMs), now);
    if (slot !== undefined) return slot;
  }
  return undefined;
}
