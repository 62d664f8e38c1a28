-- Courses: cover images, explicit end and deletion of lessons, and the rule that a course
-- something was ever sold for cannot be deleted (issue #7; docs/courses.md, "Deleting").

-- The cover's object key in storage (`courses/<id>/cover-<random>.<ext>`); NULL: no cover.
ALTER TABLE courses
    ADD COLUMN cover_key text CHECK (cover_key IS NULL OR length(cover_key) BETWEEN 1 AND 512);

-- `ended_at`: a teacher ended the lesson (`POST /lessons/{id}/end`). `deleted_at`: the lesson
-- was deleted; the row stays (its live stream, recordings and the orders of its course keep
-- pointing at it) and disappears from every query.
ALTER TABLE lessons
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN deleted_at timestamptz;

-- Course orders point at their course through a real foreign key (`product_id` is generic):
-- a course that has an order, whatever its state, cannot be deleted, only archived. The key is
-- derived from `product_id`, so nothing that writes orders changes.
ALTER TABLE orders
    ADD COLUMN course_id uuid GENERATED ALWAYS AS (CASE WHEN kind = 'course' THEN product_id END) STORED
        CONSTRAINT orders_course_id_fkey REFERENCES courses (id) ON DELETE RESTRICT;
CREATE INDEX orders_course ON orders (course_id) WHERE course_id IS NOT NULL;
