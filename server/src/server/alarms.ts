/**
 * The cluster's raised alarms (NOSPACE, CORRUPT), as etcd's alarm store keeps them: changed only
 * by applying alarm requests from the log, persisted in the backend's "alarm" bucket (key: member
 * ID as 8 bytes big-endian ++ alarm type as 1 byte) in the same batch as the entry.
 */
import { AlarmMember, AlarmRequest, AlarmRequest_AlarmAction, AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { WriteSession } from "./store-port.js";

export interface RaisedAlarm {
  memberId: bigint;
  alarm: AlarmType;
}

function alarmKey(memberId: bigint, alarm: AlarmType): Buffer {
  const key = Buffer.alloc(9);
  key.writeBigUInt64BE(memberId);
  key[8] = alarm;
  return key;
}

export class AlarmStore {
  private readonly raised: RaisedAlarm[] = [];

  /** Raised alarms, in raise order. The array is owned by the store: do not mutate. */
  list(): readonly RaisedAlarm[] {
    return this.raised;
  }

  /** Whether any member has raised `alarm`. */
  isRaised(alarm: AlarmType): boolean {
    // A loop, not some(): asked twice for every applied entry, and a closure each time is garbage.
    for (const a of this.raised) if (a.alarm === alarm) return true;
    return false;
  }

  /** Restores persisted alarms (start-up, or after installing a snapshot). */
  load(records: [Buffer, Buffer][]): void {
    this.raised.length = 0;
    for (const [k] of records) this.raised.push({ memberId: k.readBigUInt64BE(0), alarm: k[8] as AlarmType });
  }

  /** Applies an alarm request: activate, deactivate, or get (which changes nothing). */
  apply(req: AlarmRequest, w: WriteSession): AlarmMember[] {
    const i = this.raised.findIndex((a) => a.memberId === req.memberID && a.alarm === req.alarm);
    if (req.action === AlarmRequest_AlarmAction.ACTIVATE) {
      if (req.alarm === AlarmType.NONE) return [];
      if (i < 0) {
        this.raised.push({ memberId: req.memberID, alarm: req.alarm });
        w.stage("alarm", alarmKey(req.memberID, req.alarm), Buffer.alloc(0));
      }
      return [{ memberID: req.memberID, alarm: req.alarm }];
    }
    if (req.action === AlarmRequest_AlarmAction.DEACTIVATE) {
      if (i < 0) return [];
      this.raised.splice(i, 1);
      w.stage("alarm", alarmKey(req.memberID, req.alarm), undefined);
      return [{ memberID: req.memberID, alarm: req.alarm }];
    }
    return this.raised
      .filter((a) => req.alarm === AlarmType.NONE || a.alarm === req.alarm)
      .map((a) => ({ memberID: a.memberId, alarm: a.alarm }));
  }
}
