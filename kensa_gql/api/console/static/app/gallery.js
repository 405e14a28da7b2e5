// The gallery (newest first, paginated), the detail view, and live progress through videoStatus.

import { DOCUMENTS } from "./api.js";
import { $, announce, h, TERMINAL, when } from "./dom.js";

const PAGE_SIZE = 8;

export class Gallery {
  constructor({ api, live, onSettled }) {
    this.api = api;
    this.live = live; // () => the graphql-ws client
    this.onSettled = onSettled; // a video reached a final state or was deleted: credits changed
    this.page = 1;
    this.total = 0;
    this.videos = [];
    this.watching = new Map(); // uuid -> dispose
    this.openUuid = null;
    $("videos-prev").addEventListener("click", () => this.load(this.page - 1));
    $("videos-next").addEventListener("click", () => this.load(this.page + 1));
    $("detail-close").addEventListener("click", () => this.close());
    $("detail-delete").addEventListener("click", () => this.remove());
    $("detail-cancel").addEventListener("click", () => this.cancel());
  }

  async load(page = this.page) {
    const data = await this.api(DOCUMENTS.videos, { page: Math.max(page, 1), pageSize: PAGE_SIZE });
    const { videos, total } = data.videos;
    this.page = data.videos.page;
    this.total = total;
    this.videos = videos;
    this.render();
    for (const video of videos) if (!TERMINAL.has(video.status)) this.watch(video.uuid);
  }

  /** A new video (from this tab or another): show the first page and follow it. */
  async added(video) {
    if (video) announce(`Video queued: ${video.prompt}`);
    await this.load(1);
    if (video) this.watch(video.uuid);
  }

  watch(uuid) {
    if (this.watching.has(uuid)) return;
    const dispose = this.live().subscribe({ query: DOCUMENTS.status, variables: { uuid } }, {
      next: ({ data, errors }) => {
        if (errors && errors.length) return;
        if (data && data.videoStatus) this.update(data.videoStatus);
      },
      error: () => { this.watching.delete(uuid); },
      complete: () => { this.watching.delete(uuid); },
    });
    this.watching.set(uuid, dispose);
  }

  stopAll() {
    for (const dispose of this.watching.values()) dispose();
    this.watching.clear();
  }

  running() {
    return this.watching.size;
  }

  update(video) {
    const index = this.videos.findIndex((v) => v.uuid === video.uuid);
    const before = index >= 0 ? this.videos[index] : null;
    if (index >= 0) this.videos[index] = video;
    if (before && before.status !== video.status) {
      announce(`${video.prompt}: ${video.status.toLowerCase()}`);
    }
    if (TERMINAL.has(video.status) && (!before || !TERMINAL.has(before.status))) this.onSettled();
    this.render();
    if (this.openUuid === video.uuid) this.showDetail(video);
  }

  render() {
    const list = $("gallery");
    // Progress events re-draw the cards: keep the keyboard focus on the card that had it.
    const focused = list.contains(document.activeElement) ? document.activeElement.closest("li")?.dataset.uuid : null;
    list.replaceChildren(...this.videos.map((video) => this.card(video)));
    if (focused) list.querySelector(`li[data-uuid="${focused}"] button`)?.focus();
    $("gallery-empty").hidden = this.videos.length > 0;
    const pages = Math.max(1, Math.ceil(this.total / PAGE_SIZE));
    $("videos-page").textContent = `Page ${this.page} of ${pages} (${this.total} videos)`;
    $("videos-prev").disabled = this.page <= 1;
    $("videos-next").disabled = this.page >= pages;
  }

  card(video) {
    const thumb = video.thumbnailUrl
      ? h("img", { src: video.thumbnailUrl, alt: "", loading: "lazy" })
      : video.status;
    // A finished video keeps its full bar; a failed or cancelled one shows none.
    const progress = TERMINAL.has(video.status) && video.status !== "COMPLETED" ? null : h("progress", {
      max: 100, value: video.progress, "aria-label": `Progress of ${video.prompt}`,
    }, `${video.progress} %`);
    return h("li", { class: "card", "data-uuid": video.uuid, "data-status": video.status },
      h("button", { type: "button", class: "open", onclick: () => this.open(video.uuid),
        "aria-label": `Open video: ${video.prompt}` },
        h("div", { class: "thumb" }, thumb),
        h("div", { class: "meta" },
          h("span", { class: "prompt" }, video.prompt),
          h("span", { class: `status status-${video.status}` }, video.status),
          TERMINAL.has(video.status) ? "" : h("span", { class: "pct" }, ` ${video.progress} %`),
          h("br"),
          `${video.model} · ${video.duration} s · ${video.creditsUsed} cr`,
          progress)));
  }

  async open(uuid) {
    const found = this.videos.find((v) => v.uuid === uuid);
    const data = found ? { video: found } : await this.api(DOCUMENTS.video, { uuid });
    if (!data.video) return;
    this.openUuid = uuid;
    this.showDetail(data.video, true);
    $("detail").hidden = false;
    $("detail").focus();
  }

  showDetail(video, fresh = false) {
    $("detail-title").textContent = video.prompt;
    $("detail-error").textContent = "";
    const player = $("detail-player");
    const current = player.querySelector("video");
    if (video.videoUrl && (fresh || !current || current.getAttribute("src") !== video.videoUrl)) {
      player.replaceChildren(h("video", { src: video.videoUrl, controls: true, preload: "metadata",
        poster: video.thumbnailUrl, "aria-label": `Video: ${video.prompt}` }));
    } else if (!video.videoUrl) {
      player.replaceChildren(h("p", { class: "help" },
        TERMINAL.has(video.status) ? "No video." : `Being made: ${video.progress} %`));
    }
    const facts = [
      ["Status", video.status], ["Progress", `${video.progress} %`], ["Model", video.model],
      ["Duration", `${video.duration} s`], ["Quality", video.resolution || "–"], ["Aspect ratio", video.aspectRatio],
      ["Credits", String(video.creditsUsed)], ["Requested", when(video.createdAt)],
      ["Completed", when(video.completedAt)], ["Generation time", video.generationTime ? `${video.generationTime} s` : "–"],
      ["Prompt", video.prompt], ["UUID", video.uuid],
    ];
    if (video.errorMessage) facts.push(["Error", video.errorMessage]);
    $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    $("detail-cancel").hidden = TERMINAL.has(video.status);
  }

  close() {
    this.openUuid = null;
    $("detail").hidden = true;
    $("detail-player").replaceChildren();
    $("gallery-title").focus?.();
  }

  async remove() {
    const uuid = this.openUuid;
    if (!uuid) return;
    try {
      await this.api(DOCUMENTS.remove, { uuid });
    } catch (error) {
      $("detail-error").textContent = `${error.message} (${error.code})`;
      return;
    }
    this.watching.get(uuid)?.();
    this.watching.delete(uuid);
    this.close();
    announce("Video deleted");
    await this.load();
    this.onSettled();
  }

  async cancel() {
    const uuid = this.openUuid;
    if (!uuid) return;
    try {
      const data = await this.api(DOCUMENTS.cancel, { uuid });
      if (data.cancelVideo.video) this.update(data.cancelVideo.video);
      announce(`Cancel: ${data.cancelVideo.outcome.toLowerCase().replace("_", " ")}`);
    } catch (error) {
      $("detail-error").textContent = `${error.message} (${error.code})`;
    }
  }
}
