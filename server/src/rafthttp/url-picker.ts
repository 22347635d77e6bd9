/**
 * Which of a peer's URLs to use (etcd's urlPicker): the same one until it fails, then the next,
 * round-robin. Every path to the peer (pipeline, stream readers, snapshots) shares one picker.
 */
export class UrlPicker {
  private urls: string[];
  private picked = 0;

  constructor(urls: readonly string[]) {
    if (urls.length === 0) throw new Error("a peer needs at least one URL");
    this.urls = [...urls];
  }

  pick(): string {
    return this.urls[this.picked]!;
  }

  /** Replaces the URLs (a member update) and starts again from the first. */
  update(urls: readonly string[]): void {
    if (urls.length === 0) throw new Error("a peer needs at least one URL");
    this.urls = [...urls];
    this.picked = 0;
  }

  /** `url` failed: move on to the next URL, unless another path has already moved past it. */
  unreachable(url: string): void {
    if (this.urls[this.picked] === url) this.picked = (this.picked + 1) % this.urls.length;
  }

  get all(): readonly string[] {
    return this.urls;
  }
}
