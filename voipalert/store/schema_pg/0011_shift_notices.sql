-- voipalert schema 11 on PostgreSQL: shift-change notices (docs/rota-edits.md), as
-- schema/0011_shift_notices.sql.
ALTER TABLE people ADD COLUMN shift_notice_contact INTEGER
    CHECK (shift_notice_contact IS NULL OR shift_notice_contact >= 0);
ALTER TABLE people ADD COLUMN shift_notice_before_seconds INTEGER
    CHECK (shift_notice_before_seconds IS NULL OR shift_notice_before_seconds BETWEEN 60 AND 604800);
