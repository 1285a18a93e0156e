/* Keyboard helpers shared by the labeling page (label.js) and the chat (chat.js). */
(function () {
  "use strict";

  /* Whether a key press belongs to a field the user is typing in (shortcuts stay out of it). */
  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && !/^(button|submit|checkbox|radio|reset)$/i.test(target.type || ""));
  }

  window.FeedbackKeys = { isTyping: isTyping };
})();
