// voipalert console: live updates of the alert board over server-sent events.
// The page works without this file; it only saves the reload. The server sends the board's
// rows already rendered (and escaped) by the page's own template.
"use strict";
(function () {
  var board = document.getElementById("board");
  if (!board || !window.EventSource) {
    return;
  }
  var live = document.getElementById("live");
  // The same filters as the page (its query string).
  var source = new EventSource("/events" + window.location.search);
  source.addEventListener("board", function (event) {
    board.innerHTML = event.data;
    if (live) {
      live.hidden = false;
    }
  });
  source.addEventListener("logout", function () {
    source.close();
    window.location.assign("/login");
  });
  source.onerror = function () {
    if (live) {
      live.hidden = true;
    }
  };
})();
