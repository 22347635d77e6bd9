/**
 * An S3-compatible server for tests: moto's server (`python3 -m moto.server`, installed by
 * scripts/install-test-deps.sh's check), on a free port of `host`. `credentials()` makes an IAM
 * user with full S3 rights and its access key, then turns authentication on (moto checks every
 * later request's signature against its IAM users: a wrong key or secret is refused as AWS
 * would). `createBucket` runs before that too. Stop it with `stop()` (or killAllChildren()).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { freePort, killChild, sleep, trackChild } from "./processes.js";

/** Why moto cannot run here, or undefined. */
export function motoMissing(): string | undefined {
  try {
    execFileSync("python3", ["-c", "import moto.server, boto3"], { stdio: "ignore", timeout: 60_000 });
    return undefined;
  } catch {
    return "python3 cannot import moto.server (see scripts/install-test-deps.sh)";
  }
}

export interface MotoCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export class Moto {
  private constructor(
    readonly endpoint: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(host = "127.0.0.1", port?: number): Promise<Moto> {
    const p = port ?? (await freePort(host));
    const child = spawn("python3", ["-m", "moto.server", "-H", host, "-p", String(p)], { stdio: ["ignore", "ignore", "pipe"] });
    trackChild(child);
    let stderr = "";
    child.stderr!.on("data", (d) => {
      stderr = (stderr + String(d)).slice(-4000);
    });
    const endpoint = `http://${host}:${p}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`moto exited ${child.exitCode}: ${stderr}`);
      const ok = await fetch(`${endpoint}/moto-api/data.json`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
      if (ok) return new Moto(endpoint, child);
      if (Date.now() > deadline) {
        await killChild(child);
        throw new Error(`moto did not answer on ${endpoint} within 60 s: ${stderr}`);
      }
      await sleep(200);
    }
  }

  private python(script: string, args: string[]): string {
    return execFileSync("python3", ["-c", script, this.endpoint, ...args], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, AWS_ACCESS_KEY_ID: "setup", AWS_SECRET_ACCESS_KEY: "setup", AWS_DEFAULT_REGION: "us-east-1" },
    });
  }

  /** Makes buckets (before credentials(), or with auth still off). */
  createBucket(...names: string[]): void {
    this.python("import sys, boto3\ns3 = boto3.client('s3', endpoint_url=sys.argv[1])\nfor b in sys.argv[2:]: s3.create_bucket(Bucket=b)\n", names);
  }

  /** An IAM user allowed everything on S3, its access key; then authentication is enforced. */
  async credentials(): Promise<MotoCredentials> {
    const out = this.python(
      [
        "import sys, json, boto3",
        "iam = boto3.client('iam', endpoint_url=sys.argv[1])",
        "iam.create_user(UserName='backup')",
        "iam.put_user_policy(UserName='backup', PolicyName='s3', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}]}))",
        "k = iam.create_access_key(UserName='backup')['AccessKey']",
        "print(json.dumps({'accessKeyId': k['AccessKeyId'], 'secretAccessKey': k['SecretAccessKey']}))",
      ].join("\n"),
      [],
    );
    await this.auth(true);
    return JSON.parse(out.trim().split("\n").at(-1)!) as MotoCredentials;
  }

  /**
   * Authentication on or off. Off is for what moto 5's signature check gets wrong: it refuses a
   * correctly signed request whose query has a `/` in a value (a ListObjectsV2 prefix with a
   * slash), from boto3 and the JavaScript SDK alike.
   */
  async auth(on: boolean): Promise<void> {
    const res = await fetch(`${this.endpoint}/moto-api/reset-auth`, { method: "POST", body: on ? "0" : "inf" });
    if (!res.ok) throw new Error(`moto reset-auth: ${res.status}`);
  }

  async stop(): Promise<void> {
    await killChild(this.child, "SIGTERM");
  }
}
