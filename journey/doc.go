// Package journey is wejourney's engine: journey definitions and their
// validation, durable event ingest, the trigger index, enrollments, step
// execution, scheduling and the sweeper. It imports no HTTP framework;
// handler/ translates requests into calls on Ingestor and Engine.
//
// The contract:
//
//   - Ingestor.Ingest returns only after the events are committed; a repeated
//     dedupe key is counted as a duplicate and stores nothing.
//   - Every committed event is routed once: routing marks it routed in the
//     same transaction that creates its enrollments and step visits.
//   - Every step visit transitions once (conditional updates on its status),
//     so a step's message is handed to its channel at most once per visit,
//     whatever retries, duplicate tasks or crashes happen.
//   - The database holds every due time; asynq tasks carry only ids. The
//     sweeper re-enqueues whatever is overdue, so losing Redis loses nothing.
package journey
