-- Instances that joined by their cloud identity, so that each joins once
-- (per join method) unless the join allows enrolling again.
CREATE TABLE join_instances (
    join_name TEXT NOT NULL,
    instance TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    PRIMARY KEY (join_name, instance)
);
