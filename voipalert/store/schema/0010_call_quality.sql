-- voipalert schema 10: the audio quality of each answered call (docs/realtime.md §7): loss and
-- jitter both ways, the round trip and an estimated MOS, from RTCP, as one JSON object.
ALTER TABLE attempts ADD COLUMN quality TEXT CHECK (quality IS NULL OR json_valid(quality));
