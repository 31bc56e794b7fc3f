// voipalert console: live updates of the alert board over server-sent events.
// The page works without this file; it only saves the reload. The server sends the board's
// rows already rendered (and escaped) by the page's own template.
"use strict";
(function () {
  if (!window.EventSource) {
    return;
  }
  // An alert's page follows its calls (a mass alert's outcomes, person by person).
  var calls = document.getElementById("calls");
  if (calls) {
    var id = calls.getAttribute("data-alert");
    var stream = new EventSource("/events?alert=" + encodeURIComponent(id));
    stream.addEventListener("calls", function (event) {
      calls.innerHTML = event.data;
    });
    stream.addEventListener("logout", function () {
      stream.close();
    });
  }
  var board = document.getElementById("board");
  if (!board) {
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
