-- voipalert schema 11: shift-change notices (docs/rota-edits.md, "Shift-change notices"): a
-- person may ask for a text or an e-mail some time before each of their shifts starts.
ALTER TABLE people ADD COLUMN shift_notice_contact INTEGER
    CHECK (shift_notice_contact IS NULL OR shift_notice_contact >= 0);
ALTER TABLE people ADD COLUMN shift_notice_before_seconds INTEGER
    CHECK (shift_notice_before_seconds IS NULL OR shift_notice_before_seconds BETWEEN 60 AND 604800);
