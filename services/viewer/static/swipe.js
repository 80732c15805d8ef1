// The viewer's swipe ("Comparer (volet)") as a vertical divider over the maps that the user drags: it moves the
// range input #slider that app.js listens to (the input stays, for keyboards), so the two are one control.
const slider = document.getElementById("slider");
const maps = document.getElementById("maps");

const divider = document.createElement("div");
divider.id = "swipe-divider";
divider.className = "hidden";
divider.setAttribute("role", "separator");
divider.setAttribute("aria-orientation", "vertical");
divider.setAttribute("aria-label", "Séparateur du volet : faites-le glisser");
const grip = document.createElement("span");
grip.className = "grip";
divider.appendChild(grip);
maps.appendChild(divider);

function sync() {
  divider.style.left = `${slider.value}%`;
  divider.classList.toggle("hidden", slider.classList.contains("hidden"));
}

function moveTo(clientX) {
  const box = maps.getBoundingClientRect();
  const percent = Math.min(100, Math.max(0, (100 * (clientX - box.left)) / box.width));
  slider.value = String(Math.round(percent * 10) / 10);
  slider.dispatchEvent(new Event("input"));  // app.js clips the second map
}

let dragging = false;
divider.addEventListener("pointerdown", (e) => { dragging = true; divider.setPointerCapture(e.pointerId); });
divider.addEventListener("pointermove", (e) => { if (dragging) moveTo(e.clientX); });
divider.addEventListener("pointerup", () => { dragging = false; });
slider.addEventListener("input", sync);
new MutationObserver(sync).observe(slider, { attributes: true, attributeFilter: ["class"] });
sync();
