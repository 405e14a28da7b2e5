// The generate form: built from `models`, offering only the combinations the catalogue allows.

import { ApiError, DOCUMENTS } from "./api.js";
import { $, h } from "./dom.js";

const FIELDS = ["prompt", "model", "duration", "aspectRatio", "quality", "startImageUrl"];

export class GenerateForm {
  constructor({ api, onGenerated, balance }) {
    this.api = api;
    this.onGenerated = onGenerated;
    this.balance = balance; // () => available credits, or null when unknown
    this.models = [];
    this.form = $("generate-form");
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    $("f-model").addEventListener("change", () => this.fillOptions());
    for (const id of ["f-duration", "f-quality", "f-aspectRatio"]) {
      $(id).addEventListener("change", () => this.showPrice());
    }
  }

  async load() {
    const data = await this.api(DOCUMENTS.models);
    this.models = data.models.filter((m) => m.enabled);
    const select = $("f-model");
    select.replaceChildren(...this.models.map((m) => h("option", { value: m.id }, m.name)));
    this.fillOptions();
  }

  model() {
    return this.models.find((m) => m.id === $("f-model").value);
  }

  fillOptions() {
    const model = this.model();
    if (!model) return;
    const fill = (id, values, label = (v) => String(v)) =>
      $(id).replaceChildren(...values.map((v) => h("option", { value: v }, label(v))));
    fill("f-duration", model.durations, (d) => `${d} s`);
    fill("f-aspectRatio", model.aspectRatios);
    fill("f-quality", model.resolutions);
    this.showPrice();
  }

  /** The price of the current choice (VideoModel.prices), or null when none is chosen. */
  price() {
    const model = this.model();
    if (!model) return null;
    const duration = Number($("f-duration").value);
    const quality = $("f-quality").value;
    const found = model.prices.find((p) => p.duration === duration && p.quality === quality);
    return found ? found.credits : null;
  }

  showPrice() {
    const line = $("price");
    const price = this.price();
    const available = this.balance();
    line.classList.remove("short");
    if (price === null) {
      line.textContent = "The price is frozen from your credits when you generate.";
      return;
    }
    line.textContent = `Price: ${price} credit${price === 1 ? "" : "s"}`;
    if (available !== null && price > available) {
      line.classList.add("short");
      line.textContent += ` (you have ${available} available)`;
    }
  }

  clearErrors() {
    for (const id of [...FIELDS.map((f) => `f-${f}-error`), "f-credits-error", "generate-error"]) {
      $(id).textContent = "";
    }
    for (const field of FIELDS) $(`f-${field}`).removeAttribute("aria-invalid");
  }

  /** Shows a server error next to the field it names (extensions.field), or by its code. */
  showError(error) {
    if (error instanceof ApiError && error.field && FIELDS.includes(error.field)) {
      $(`f-${error.field}-error`).textContent = error.message;
      $(`f-${error.field}`).setAttribute("aria-invalid", "true");
      $(`f-${error.field}`).focus();
    } else if (error.code === "INSUFFICIENT_CREDITS") {
      $("f-credits-error").textContent = `Not enough credits: ${error.message}`;
    } else {
      $("generate-error").textContent = `${error.message} (${error.code})`;
    }
  }

  async submit() {
    this.clearErrors();
    const prompt = $("f-prompt").value.trim();
    if (!prompt) {
      this.showError(new ApiError("Describe the video to make.", { code: "BAD_USER_INPUT", field: "prompt" }));
      return;
    }
    const input = {
      prompt,
      model: $("f-model").value,
      duration: Number($("f-duration").value),
      aspectRatio: $("f-aspectRatio").value,
      quality: $("f-quality").value,
      idempotencyKey: crypto.randomUUID(),
    };
    const image = $("f-startImageUrl").value.trim();
    if (image) input.startImageUrl = image;
    const button = $("generate");
    button.disabled = true;
    try {
      const data = await this.api(DOCUMENTS.generate, { input });
      this.onGenerated(data.generateVideo);
    } catch (error) {
      this.showError(error);
    } finally {
      button.disabled = false;
    }
  }
}
