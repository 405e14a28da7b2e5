// Small DOM helpers shared by the console's modules.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text: nothing is parsed as HTML). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((c) => c !== null && c !== undefined));
  return element;
}

export function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A fresh text node in a cleared region is read out even when the text repeats.
  requestAnimationFrame(() => { region.textContent = text; });
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
