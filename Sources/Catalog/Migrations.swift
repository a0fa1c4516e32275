/// The catalog's schema, one script per version; `PRAGMA user_version` says how many have run.
/// Append new migrations; never edit one that has shipped.
enum Migrations {
    static let all: [String] = [
        // 1: models, versions, datasets, jobs, in-flight uploads.
        """
        -- AUTOINCREMENT: ids become inode numbers and cache keys, so a deleted row's id is never reused.
        CREATE TABLE models (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL DEFAULT 'general' CHECK (type IN ('text', 'image', 'general')),
            note TEXT NOT NULL DEFAULT '',
            -- 1 while the manifest in the bucket is behind this row (object storage was down).
            manifest_dirty INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            modified REAL NOT NULL
        );
        CREATE TABLE versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            format TEXT NOT NULL,
            object_key TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT,
            status TEXT NOT NULL CHECK (status IN ('uploading', 'ready', 'failed')),
            error TEXT,
            note TEXT NOT NULL DEFAULT '',
            parent_version TEXT,
            dataset TEXT,
            job_id TEXT,
            created REAL NOT NULL,
            modified REAL NOT NULL,
            UNIQUE (model_id, name)
        );
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            format TEXT NOT NULL,
            object_key TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL DEFAULT 0,
            records INTEGER,
            sha256 TEXT,
            status TEXT NOT NULL CHECK (status IN ('uploading', 'ready', 'failed')),
            error TEXT,
            note TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            modified REAL NOT NULL
        );
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            dataset TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            executor TEXT NOT NULL,
            executor_id TEXT,
            error TEXT,
            created REAL NOT NULL,
            started REAL,
            finished REAL
        );
        CREATE TABLE uploads (
            id INTEGER PRIMARY KEY,
            object_key TEXT NOT NULL UNIQUE,
            upload_id TEXT NOT NULL,
            part_size INTEGER NOT NULL,
            version_id INTEGER REFERENCES versions(id) ON DELETE CASCADE,
            dataset_id INTEGER REFERENCES datasets(id) ON DELETE CASCADE,
            source_path TEXT,
            source_size INTEGER,
            created REAL NOT NULL
        );
        CREATE TABLE upload_parts (
            upload INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            etag TEXT NOT NULL,
            size INTEGER NOT NULL,
            PRIMARY KEY (upload, number)
        );
        CREATE INDEX versions_by_model ON versions(model_id);
        """,
        // 2: what a job needs to be followed and reconciled after a restart.
        """
        ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
        ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]';
        CREATE INDEX jobs_by_status ON jobs(status);
        """,
        // 3: neighbours — the catalog's id (claimed in the bucket), who writes each upload (so a
        // mount's sweep fails only uploads whose writer is gone), and manifest generations (so an
        // older manifest never replaces a newer one). Every change to a dataset row bumps the
        // datasets manifest's generation, whichever code made it.
        """
        CREATE TABLE catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        ALTER TABLE versions ADD COLUMN writer TEXT;
        ALTER TABLE datasets ADD COLUMN writer TEXT;
        ALTER TABLE models ADD COLUMN manifest_generation INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE manifest_state (
            name TEXT PRIMARY KEY,
            generation INTEGER NOT NULL DEFAULT 0,
            published INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO manifest_state (name, generation) VALUES ('datasets', (SELECT count(*) > 0 FROM datasets));
        CREATE TRIGGER datasets_manifest_insert AFTER INSERT ON datasets
            BEGIN UPDATE manifest_state SET generation = generation + 1 WHERE name = 'datasets'; END;
        CREATE TRIGGER datasets_manifest_update AFTER UPDATE ON datasets
            BEGIN UPDATE manifest_state SET generation = generation + 1 WHERE name = 'datasets'; END;
        CREATE TRIGGER datasets_manifest_delete AFTER DELETE ON datasets
            BEGIN UPDATE manifest_state SET generation = generation + 1 WHERE name = 'datasets'; END;
        """,
        // 4: which upload owns a row being written, so a stale handle never completes, fails or
        // deletes what a newer upload of the same row (or a row that replaced it) holds.
        """
        ALTER TABLE versions ADD COLUMN upload_token TEXT;
        ALTER TABLE datasets ADD COLUMN upload_token TEXT;
        """,
        // 5: objects whose rows are deleted but whose bytes may still be in the bucket (a delete is
        // committed first, the object removed after): their keys stay reserved until they are gone.
        """
        CREATE TABLE pending_deletes (
            object_key TEXT PRIMARY KEY,
            created REAL NOT NULL
        );
        """,
    ]
}
