/* Chat: streams answers into the page, Enter sends, keys 1/2/=/0 pick the better of two answers.
 *
 * The server renders every finished message (Markdown sanitized server-side). While an answer
 * streams, its text is shown as plain text (textContent, never parsed as HTML); the `done` or
 * `error` event then carries the stored message's HTML, which replaces the live text.
 */
(function () {
  "use strict";

  var started = new WeakSet(); // messages whose stream this page started
  var shownAt = new WeakMap(); // comparison form -> performance.now() when shown

  function $(id) { return document.getElementById(id); }
  function chatMain() { return $("chat-main"); }
  function csrf() { var m = chatMain(); return m ? m.dataset.csrf || "" : ""; }
  function thread() { return $("chat-thread"); }

  function flash(message) {
    var box = $("chat-flash");
    if (!box) return;
    box.innerHTML = "";
    var div = document.createElement("div");
    div.className = "alert alert-error";
    div.textContent = message;
    box.appendChild(div);
  }
  function flashHtml(html) { var box = $("chat-flash"); if (box) box.innerHTML = html; } // our own fragment
  function clearFlash() { var box = $("chat-flash"); if (box) box.innerHTML = ""; }

  function lastMessage() {
    var all = document.querySelectorAll("#chat-thread .chat-msg");
    return all.length ? all[all.length - 1] : null;
  }

  function nearBottom() {
    var el = document.scrollingElement || document.documentElement;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 160;
  }
  function toBottom() {
    var el = document.scrollingElement || document.documentElement;
    el.scrollTop = el.scrollHeight;
  }

  /* The composer: Send only when the last answer is finished and there is text. */
  function composerState() {
    var last = lastMessage();
    var status = last ? last.dataset.status : "complete";
    var assistantDone = !last || (last.classList.contains("role-assistant") && status === "complete");
    return { status: status, ready: assistantDone };
  }

  function updateComposer() {
    var form = $("chat-composer");
    if (!form) return;
    var input = form.elements.text;
    var send = form.querySelector("[data-send]");
    var hint = form.querySelector("[data-hint]");
    var count = form.querySelector("[data-count]");
    var state = composerState();
    var choosing = state.status === "choosing";
    input.disabled = choosing;
    if (choosing && document.activeElement === input) input.blur();
    send.disabled = !state.ready || !input.value.trim();
    var text = "";
    if (choosing) text = "Pick the better answer first: 1, 2, = for a tie, 0 if both are bad.";
    else if (state.status === "failed") text = "The last answer did not finish: retry it first.";
    else if (!state.ready) text = "Writing the answer…";
    hint.textContent = text;
    var max = parseInt(input.dataset.max || "0", 10);
    var n = input.value.length;
    count.textContent = max && n > max * 0.8 ? n + " / " + max : "";
  }

  function submitComposer() {
    var form = $("chat-composer");
    if (!form) return;
    updateComposer();
    var send = form.querySelector("[data-send]");
    if (send.disabled) return;
    clearFlash();
    form.requestSubmit(send);
  }

  /* Streaming one answer (Server-Sent Events over a POST, read with fetch). */
  function liveSlots(body, n) {
    body.innerHTML = "";
    var slots = [];
    var wrap = body;
    if (n > 1) {
      wrap = document.createElement("div");
      wrap.className = "chat-candidates";
      body.appendChild(wrap);
    }
    for (var i = 0; i < n; i++) {
      var box = document.createElement("div");
      box.className = n > 1 ? "chat-candidate card" : "chat-live-one";
      if (n > 1) {
        var head = document.createElement("header");
        head.className = "response-head";
        head.innerHTML = '<span class="key-badge"></span><span class="response-title"></span>';
        head.firstChild.textContent = String(i + 1);
        head.lastChild.textContent = "Answer " + (i + 1);
        box.appendChild(head);
      }
      var live = document.createElement("div");
      live.className = "chat-live";
      box.appendChild(live);
      wrap.appendChild(box);
      slots.push(live);
    }
    return slots;
  }

  function replaceMessage(el, html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var fresh = tpl.content.firstElementChild;
    if (!fresh) return el;
    var stick = nearBottom();
    el.replaceWith(fresh);
    if (window.htmx) htmx.process(fresh);
    prepare(fresh);
    updateComposer();
    if (stick) toBottom();
    return fresh;
  }

  function showLocalFailure(el, message) {
    el.dataset.status = "failed";
    var body = el.querySelector("[data-stream-body]");
    var box = document.createElement("div");
    box.className = "alert alert-error chat-failed";
    var span = document.createElement("span");
    span.className = "error-message";
    span.textContent = message;
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "btn btn-small";
    retry.dataset.action = "retry";
    retry.textContent = "Retry";
    box.appendChild(span);
    box.appendChild(document.createTextNode(" "));
    box.appendChild(retry);
    if (body) body.appendChild(box);
    else el.appendChild(box);
    updateComposer();
  }

  function parseEvent(block) {
    var name = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data += line.slice(5).replace(/^ /, "");
    });
    if (!data) return null;
    return { name: name, data: JSON.parse(data) };
  }

  function stream(el) {
    if (started.has(el) || !el.dataset.streamUrl) return;
    started.add(el);
    el.dataset.status = "streaming";
    updateComposer();
    var body = el.querySelector("[data-stream-body]");
    var slots = [];
    var finished = false;

    function handle(ev) {
      if (ev.name === "start") {
        slots = liveSlots(body, ev.data.slots || 1);
      } else if (ev.name === "delta") {
        if (!slots.length) slots = liveSlots(body, 1);
        var live = slots[ev.data.slot] || slots[0];
        var stick = nearBottom();
        live.appendChild(document.createTextNode(ev.data.text));
        if (stick) toBottom();
      } else if (ev.name === "done" || ev.name === "error") {
        finished = true;
        replaceMessage(el, ev.data.html);
      }
    }

    fetch(el.dataset.streamUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), Accept: "text/event-stream" },
    }).then(function (resp) {
      if (!resp.ok || !resp.body) {
        return resp.text().then(function (html) {
          if (resp.status >= 400 && resp.status < 500 && html) flashHtml(html);
          showLocalFailure(el, "The answer could not be started (HTTP " + resp.status + ").");
        });
      }
      var reader = resp.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            if (!finished) showLocalFailure(el, "The connection closed before the answer finished.");
            return;
          }
          buffer += decoder.decode(chunk.value, { stream: true });
          var blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          blocks.forEach(function (block) {
            var ev = parseEvent(block);
            if (ev) handle(ev);
          });
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      if (!finished) showLocalFailure(el, "Could not reach the server. Your message is saved; retry.");
    });
  }

  function retry(el) {
    started.delete(el);
    el.dataset.status = "pending";
    el.querySelectorAll(".chat-failed, .chat-text").forEach(function (n) { n.remove(); });
    var body = el.querySelector("[data-stream-body]");
    if (!body) {
      body = document.createElement("div");
      body.className = "chat-stream";
      body.setAttribute("data-stream-body", "");
      el.appendChild(body);
    }
    body.innerHTML = '<span class="chat-typing muted">Writing…</span>';
    clearFlash();
    stream(el);
  }

  /* Comparisons: time from showing to choosing. */
  function prepare(root) {
    var forms = root.matches && root.matches("form.chat-choose") ? [root] : root.querySelectorAll ? root.querySelectorAll("form.chat-choose") : [];
    Array.prototype.forEach.call(forms, function (form) { if (!shownAt.has(form)) shownAt.set(form, performance.now()); });
  }

  function startPending() {
    document.querySelectorAll('#chat-thread .chat-msg[data-status="pending"]').forEach(stream);
  }

  var isTyping = window.FeedbackKeys.isTyping;  /* keys.js */

  document.addEventListener("keydown", function (e) {
    if (!chatMain()) return;
    if (e.target && e.target.id === "chat-input") {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.ctrlKey && !e.metaKey && !e.altKey) {
        e.preventDefault();
        submitComposer();
      }
      return;
    }
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing || isTyping(e.target)) return;
    var key = e.key;
    if (key !== "1" && key !== "2" && key !== "=" && key !== "0") return;
    var form = document.querySelector('#chat-thread .chat-msg[data-status="choosing"] form.chat-choose');
    if (!form) return;
    var button = form.querySelector('[data-choice-key="' + key + '"]');
    if (button && !button.disabled) {
      e.preventDefault();
      button.click();
    }
  });

  document.addEventListener("click", function (e) {
    if (!chatMain() || !e.target.closest) return;
    var retryButton = e.target.closest('[data-action="retry"]');
    if (retryButton) {
      e.preventDefault();
      var msg = retryButton.closest(".chat-msg");
      if (msg) retry(msg);
      return;
    }
    var choice = e.target.closest("form.chat-choose button[name=choice]");
    if (choice) {
      var form = choice.form;
      var start = shownAt.get(form);
      if (start !== undefined) form.elements.time_spent_ms.value = String(Math.max(1, Math.round(performance.now() - start)));
    }
  });

  document.addEventListener("input", function (e) {
    if (e.target && e.target.id === "chat-input") updateComposer();
  });

  /* htmx: errors go to #chat-flash; new content may hold a pending answer to stream. */
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (!chatMain()) return;
    var xhr = e.detail.xhr;
    if (xhr.status >= 400 && !xhr.getResponseHeader("HX-Retarget")) {
      e.detail.shouldSwap = false;
      e.detail.isError = false;
      flash("Something went wrong (HTTP " + xhr.status + "). Nothing was lost; please try again.");
    } else if (xhr.status < 400) {
      clearFlash();
    }
  });
  document.addEventListener("htmx:sendError", function () {
    if (chatMain()) flash("Could not reach the server. Check your connection and try again.");
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!chatMain()) return;
    prepare(document);
    updateComposer();
    startPending();
    var input = $("chat-input");
    if (input && !input.disabled && !isTyping(document.activeElement)) input.focus();
    toBottom();
  });

  function init() {
    if (!chatMain()) return;
    prepare(document);
    updateComposer();
    startPending();
    var input = $("chat-input");
    if (input && !input.disabled) input.focus();
    toBottom();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
