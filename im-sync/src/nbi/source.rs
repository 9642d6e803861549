//! Where pages come from ([`Source`]), and a run over them ([`Run`]):
//! paging, the snapshot pinned across every page of the run, the run's
//! watermark, and the end of each entity's listing.
//!
//! A source only answers "the page of entity E at offset O"; the HTTP client
//! ([`super::NbiClient`]) and [`MemorySource`] (pages held in memory or read
//! from a directory of exported page files) are the two implementations.
//!
//! ```no_run
//! use im_sync::nbi::{NbiClient, NbiClientConfig, Run, System};
//! # async fn go() -> Result<(), im_sync::nbi::NbiError> {
//! let client = NbiClient::new(NbiClientConfig::new(System::Matrix, "http://127.0.0.1:8090"))?;
//! let mut run = Run::full(&client, 5000);
//! for &entity in System::Matrix.entities() {
//!     while let Some(page) = run.next_page(entity).await? {
//!         println!("{entity}: {} rows, {} rejects", page.rows.len(), page.rejects.len());
//!     }
//! }
//! println!("snapshot {:?}, watermark {:?}", run.snapshot(), run.watermark());
//! # Ok(()) }
//! ```

use super::wire::{Entity, Page, PageError, ParseLimits, System, parse_page};
use bytes::Bytes;
use http::StatusCode;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};

/// Why a page (or a run) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NbiError {
    /// The client or run settings are unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// HTTP 410: the snapshot expired; start the run again.
    #[error("snapshot {snapshot:?} expired; the run must start again")]
    SnapshotExpired {
        /// The snapshot the request named (if any).
        snapshot: Option<String>,
    },
    /// An HTTP status other than 200 and 410 (5xx ones after the retries).
    #[error("HTTP {status} for {url}")]
    Http {
        /// The status.
        status: StatusCode,
        /// The request URL.
        url: String,
    },
    /// Connection failure, dropped connection or time-out (after the
    /// retries ran out).
    #[error("transport: {0}")]
    Transport(String),
    /// The answer is larger than the configured cap.
    #[error("the page is larger than {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The page could not be read as a whole.
    #[error("page of {entity} at offset {offset}: {error}")]
    Page {
        /// The entity requested.
        entity: Entity,
        /// The offset requested.
        offset: u64,
        /// What is wrong with it.
        error: PageError,
    },
    /// A readable page that does not answer the request (other system,
    /// entity, snapshot or offset).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A local source (an export directory) failed.
    #[error("source: {0}")]
    Source(String),
}

impl NbiError {
    /// Whether an attempt that failed this way is retried (connection
    /// errors, time-outs, HTTP 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            NbiError::Transport(_) => true,
            NbiError::Http { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// One page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The entity.
    pub entity: Entity,
    /// Position of the first row element wanted.
    pub offset: u64,
    /// Page size wanted (the source may answer fewer or more).
    pub limit: u32,
    /// The run's snapshot, once the first page named it.
    pub snapshot: Option<String>,
    /// For an incremental run: the watermark of the last good run.
    pub since: Option<String>,
}

/// A source of NBI pages: "give me the page of entity E at offset O of run R".
pub trait Source: Send + Sync {
    /// The system whose pages this source gives.
    fn system(&self) -> System;

    /// Fetches and reads one page (with whatever retries the source does).
    fn fetch_page(
        &self,
        request: &PageRequest,
    ) -> impl Future<Output = Result<Page, NbiError>> + Send;
}

/// What a run read of one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntityCount {
    /// Pages read.
    pub pages: u64,
    /// Rows read.
    pub rows: u64,
    /// Tombstones read.
    pub tombstones: u64,
    /// Rows rejected.
    pub rejects: u64,
}

impl EntityCount {
    fn add(&mut self, page: &Page) {
        self.pages += 1;
        self.rows += page.rows.len() as u64;
        self.tombstones += page.tombstones.len() as u64;
        self.rejects += page.rejects.len() as u64;
    }
}

#[derive(Debug)]
struct Cursor {
    entity: Entity,
    offset: u64,
    done: bool,
}

/// One run (full or incremental) over a source: every page of the run is
/// read under the snapshot the first page named, and the run's watermark is
/// that first page's. Pages are handed out one at a time; nothing is kept.
///
/// A [`NbiError::SnapshotExpired`] ends the run: discard what it read and
/// start a new `Run`.
#[derive(Debug)]
pub struct Run<'s, S> {
    source: &'s S,
    limit: u32,
    since: Option<String>,
    snapshot: Option<String>,
    watermark: Option<String>,
    cursor: Option<Cursor>,
    counts: HashMap<Entity, EntityCount>,
}

impl<'s, S: Source> Run<'s, S> {
    /// A full run (every row of the snapshot), `limit` rows per page.
    pub fn full(source: &'s S, limit: u32) -> Run<'s, S> {
        Run {
            source,
            limit: limit.max(1),
            since: None,
            snapshot: None,
            watermark: None,
            cursor: None,
            counts: HashMap::new(),
        }
    }

    /// An incremental run: rows changed since watermark `since` (the
    /// watermark of the last good run), removed rows as tombstones.
    pub fn incremental(source: &'s S, limit: u32, since: impl Into<String>) -> Run<'s, S> {
        Run {
            since: Some(since.into()),
            ..Run::full(source, limit)
        }
    }

    /// The snapshot of the run, once the first page named it.
    pub fn snapshot(&self) -> Option<&str> {
        self.snapshot.as_deref()
    }

    /// The run's watermark (its first page's), to keep when the run
    /// succeeds and pass as `since` to the next incremental run.
    pub fn watermark(&self) -> Option<&str> {
        self.watermark.as_deref()
    }

    /// The `since` watermark of an incremental run.
    pub fn since(&self) -> Option<&str> {
        self.since.as_deref()
    }

    /// What the run has read of `entity` so far.
    pub fn count(&self, entity: Entity) -> EntityCount {
        self.counts.get(&entity).copied().unwrap_or_default()
    }

    /// The next page of `entity`, or `None` once its listing is read
    /// (`offset` reached `total`, or an empty page). Asking for another
    /// entity starts that entity's listing from offset 0.
    pub async fn next_page(&mut self, entity: Entity) -> Result<Option<Page>, NbiError> {
        let system = self.source.system();
        if !system.serves(entity) {
            return Err(NbiError::Config(format!(
                "{system} does not serve {entity}"
            )));
        }
        if self.cursor.as_ref().is_none_or(|c| c.entity != entity) {
            self.cursor = Some(Cursor {
                entity,
                offset: 0,
                done: false,
            });
        }
        let (offset, done) = match &self.cursor {
            Some(c) => (c.offset, c.done),
            None => return Ok(None),
        };
        if done {
            return Ok(None);
        }
        let request = PageRequest {
            entity,
            offset,
            limit: self.limit,
            snapshot: self.snapshot.clone(),
            since: self.since.clone(),
        };
        let page = self.source.fetch_page(&request).await?;
        let h = &page.header;
        if h.system != system || h.entity != entity {
            return Err(NbiError::Protocol(format!(
                "asked {system} for {entity}, got a page of {} {}",
                h.system, h.entity
            )));
        }
        if h.offset != offset {
            return Err(NbiError::Protocol(format!(
                "asked for {entity} at offset {offset}, got offset {}",
                h.offset
            )));
        }
        match &self.snapshot {
            Some(s) if *s != h.snapshot => {
                return Err(NbiError::Protocol(format!(
                    "the run is pinned to snapshot {s:?}, got a page of {:?}",
                    h.snapshot
                )));
            }
            Some(_) => {}
            None => {
                self.snapshot = Some(h.snapshot.clone());
                self.watermark = Some(h.watermark.clone());
            }
        }
        let next = offset.saturating_add(page.elements);
        let finished = page.elements == 0 || next >= h.total;
        if let Some(c) = self.cursor.as_mut() {
            c.offset = next;
            c.done = finished;
        }
        if page.elements == 0 {
            return Ok(None);
        }
        self.counts.entry(entity).or_default().add(&page);
        Ok(Some(page))
    }

    /// Reads every page of `entity`, handing each to `on_page` as it
    /// arrives. Stops at the first error (the source's, or `on_page`'s).
    pub async fn read_entity<F, E>(
        &mut self,
        entity: Entity,
        mut on_page: F,
    ) -> Result<EntityCount, E>
    where
        F: FnMut(Page) -> Result<(), E>,
        E: From<NbiError>,
    {
        while let Some(page) = self.next_page(entity).await? {
            on_page(page)?;
        }
        Ok(self.count(entity))
    }

    /// Reads every entity of the source's system, parents first
    /// ([`System::entities`]), handing each page to `on_page`.
    pub async fn read_all<F, E>(&mut self, mut on_page: F) -> Result<(), E>
    where
        F: FnMut(Page) -> Result<(), E>,
        E: From<NbiError>,
    {
        for &entity in self.source.system().entities() {
            self.read_entity(entity, &mut on_page).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Stored {
    Bytes(Bytes),
    File(PathBuf),
}

/// Pages held in memory, or indexed from a directory of exported page
/// files: the page of an entity at the requested offset is served as it is
/// (the export's page boundaries win over the requested limit; `snapshot`
/// and `since` are not looked at, the run checks the snapshot).
#[derive(Debug, Clone)]
pub struct MemorySource {
    system: System,
    limits: ParseLimits,
    pages: HashMap<Entity, Vec<(u64, Stored)>>,
}

impl MemorySource {
    /// An empty source for `system`.
    pub fn new(system: System) -> MemorySource {
        MemorySource {
            system,
            limits: ParseLimits::default(),
            pages: HashMap::new(),
        }
    }

    /// Uses `limits` for reading pages.
    pub fn with_limits(mut self, limits: ParseLimits) -> MemorySource {
        self.limits = limits;
        self
    }

    fn index(&mut self, bytes: &[u8], stored: Stored, name: &str) -> Result<(), NbiError> {
        let page = parse_page(bytes, &self.limits)
            .map_err(|e| NbiError::Source(format!("{name}: {e}")))?;
        let h = page.header;
        if h.system != self.system {
            return Err(NbiError::Source(format!(
                "{name}: a page of {}, not {}",
                h.system, self.system
            )));
        }
        let list = self.pages.entry(h.entity).or_default();
        if list.iter().any(|(o, _)| *o == h.offset) {
            return Err(NbiError::Source(format!(
                "{name}: a second page of {} at offset {}",
                h.entity, h.offset
            )));
        }
        list.push((h.offset, stored));
        list.sort_by_key(|(o, _)| *o);
        Ok(())
    }

    /// Adds a page document (any charset); its header says which entity
    /// and offset it answers.
    pub fn add_page(&mut self, bytes: impl Into<Bytes>) -> Result<(), NbiError> {
        let bytes = bytes.into();
        self.index(&bytes.clone(), Stored::Bytes(bytes), "page")
    }

    /// Indexes every `*.xml` file of `dir` as a page (files are read again
    /// when their page is fetched, so memory stays bounded).
    pub fn from_dir(system: System, dir: &Path) -> Result<MemorySource, NbiError> {
        let mut src = MemorySource::new(system);
        let entries = std::fs::read_dir(dir)
            .map_err(|e| NbiError::Source(format!("{}: {e}", dir.display())))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| NbiError::Source(format!("{}: {e}", dir.display())))?;
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "xml") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path)
                .map_err(|e| NbiError::Source(format!("{}: {e}", path.display())))?;
            let name = path.display().to_string();
            src.index(&bytes, Stored::File(path), &name)?;
        }
        Ok(src)
    }
}

impl Source for MemorySource {
    fn system(&self) -> System {
        self.system
    }

    async fn fetch_page(&self, request: &PageRequest) -> Result<Page, NbiError> {
        let list = self.pages.get(&request.entity).ok_or_else(|| {
            NbiError::Source(format!("no page of {} in the export", request.entity))
        })?;
        let stored = list
            .iter()
            .find(|(o, _)| *o == request.offset)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                NbiError::Source(format!(
                    "no page of {} at offset {} in the export",
                    request.entity, request.offset
                ))
            })?;
        let page = match stored {
            Stored::Bytes(b) => parse_page(b, &self.limits),
            Stored::File(p) => {
                let path = p.clone();
                let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|e| NbiError::Source(format!("{}: {e}", p.display())))?
                    .map_err(|e| NbiError::Source(format!("{}: {e}", p.display())))?;
                parse_page(&bytes, &self.limits)
            }
        };
        page.map_err(|error| NbiError::Page {
            entity: request.entity,
            offset: request.offset,
            error,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::nbi::wire::{PageHeader, Row, write_page};
    use im_core::model::{Domain, Sector};

    fn sector(code: &str) -> Row {
        Row::Sector(Sector {
            domain: Domain::Adsl,
            code: code.into(),
            name: code.to_lowercase(),
        })
    }

    fn page(entity: Entity, snapshot: &str, offset: u64, total: u64, rows: &[Row]) -> Vec<u8> {
        let h = PageHeader {
            system: System::Matrix,
            entity,
            snapshot: snapshot.into(),
            offset,
            limit: 2,
            total,
            watermark: format!("W-{snapshot}"),
        };
        write_page(&h, "utf-8", rows, &[]).unwrap()
    }

    #[tokio::test]
    async fn pages_from_memory_and_from_a_directory() {
        let pages = [
            page(Entity::Sectors, "S1", 0, 3, &[sector("A"), sector("B")]),
            page(Entity::Sectors, "S1", 2, 3, &[sector("C")]),
            page(Entity::Zones, "S1", 0, 0, &[]),
        ];
        let mut mem = MemorySource::new(System::Matrix);
        for p in &pages {
            mem.add_page(p.clone()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        for (i, p) in pages.iter().enumerate() {
            std::fs::write(dir.path().join(format!("p{i}.xml")), p).unwrap();
        }
        let files = MemorySource::from_dir(System::Matrix, dir.path()).unwrap();
        for src in [&mem, &files] {
            let mut run = Run::full(src, 1000);
            let mut codes = Vec::new();
            let n = run
                .read_entity(Entity::Sectors, |p: Page| {
                    codes.extend(p.rows.iter().map(|r| r.key().to_string()));
                    Ok::<_, NbiError>(())
                })
                .await
                .unwrap();
            assert_eq!(codes, ["ADSL:A", "ADSL:B", "ADSL:C"]);
            assert_eq!((n.pages, n.rows), (2, 3));
            assert!(run.next_page(Entity::Zones).await.unwrap().is_none());
            assert_eq!(run.snapshot(), Some("S1"));
            assert_eq!(run.watermark(), Some("W-S1"));
            // Dslams are not in the export.
            assert!(matches!(
                run.next_page(Entity::Dslams).await,
                Err(NbiError::Source(_))
            ));
            assert!(matches!(
                run.next_page(Entity::Onts).await,
                Err(NbiError::Config(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_page_of_another_snapshot_breaks_the_run() {
        let mut mem = MemorySource::new(System::Matrix);
        mem.add_page(page(Entity::Sectors, "S1", 0, 1, &[sector("A")]))
            .unwrap();
        mem.add_page(page(Entity::Zones, "S2", 0, 0, &[])).unwrap();
        let mut run = Run::full(&mem, 10);
        assert!(run.next_page(Entity::Sectors).await.unwrap().is_some());
        assert!(run.next_page(Entity::Sectors).await.unwrap().is_none());
        assert!(matches!(
            run.next_page(Entity::Zones).await,
            Err(NbiError::Protocol(_))
        ));
        assert!(mem.add_page(b"<nbi".to_vec()).is_err());
        assert!(
            mem.add_page(page(Entity::Sectors, "S1", 0, 1, &[]))
                .is_err()
        );
    }
}
