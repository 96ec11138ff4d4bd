// bench/booking-node/server.js — the Node.js anchor of bench/booking_bench.sh.
//
// The seed 003 stack, reduced to what the bench measures: express + the official
// mongodb driver, `node:cluster` with WORKERS processes (PM2 cluster mode without
// PM2), and an in-process job queue per process: POST /api/seats/book stores a
// queued job and answers 202 + Location at once; the queue books the seats later;
// GET /api/seats/booking-status/:jobId reads the job. Same routes, JSON shapes and
// HS256 JWTs as svcd, so the same client drives both.
//
// Booking is all-or-nothing and safe on FerretDB the same way svcd's MongoDB store
// does it (FerretDB's conditional updates are not atomic; a unique index is): one
// `claims` document per seat under a unique {eventId, seat} index, inserted in one
// ordered insertMany; a duplicate key means taken -> delete this job's claims, fail.
// What it does NOT do (the seed's weakness, kept on purpose): a job queued in a
// process that dies is lost — there is no lease or recovery.
//
// Env: PORT (default 5000), WORKERS (2), MONGODB_URI, JWT_SECRET.
'use strict';
const cluster = require('node:cluster');
const crypto = require('node:crypto');
const express = require('express');
const { MongoClient } = require('mongodb');

const PORT = parseInt(process.env.PORT || '5000', 10);
const WORKERS = parseInt(process.env.WORKERS || '2', 10);
const URI = process.env.MONGODB_URI || 'mongodb://127.0.0.1:27017/booking';
const SECRET = process.env.JWT_SECRET || '';
const MAX_SEATS = 64;

if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('message', (w, msg) => {
    if (msg === 'ready' && ++ready === WORKERS) console.log(`ready on 127.0.0.1:${PORT}`);
  });
  cluster.on('exit', (w, code, sig) => console.error(`worker ${w.process.pid} exited ${code || sig}`));
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 3000).unref();
    cluster.on('exit', () => { if (Object.keys(cluster.workers).length === 0) process.exit(0); });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  main().catch((e) => { console.error(e); process.exit(1); });
}

function b64url(buf) {
  return buf.toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function verifyJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch (e) { return null; }
  if (!header || header.alg !== 'HS256') return null;
  const want = b64url(crypto.createHmac('sha256', SECRET).update(parts[0] + '.' + parts[1]).digest());
  const a = Buffer.from(want), b = Buffer.from(parts[2]);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return null;
  const now = Date.now() / 1000;
  if (typeof claims.exp === 'number' && now > claims.exp + 30) return null;
  const user = claims.sub !== undefined ? claims.sub : claims.userId;
  return (typeof user === 'string' && user) || typeof user === 'number' ? String(user) : null;
}

function err(res, status, code, message) {
  res.status(status).json({ error: { code, message } });
}

function auth(req, res) {
  const h = req.get('authorization') || '';
  const user = h.startsWith('Bearer ') ? verifyJwt(h.slice(7).trim()) : null;
  if (!user) err(res, 401, 'UNAUTHORIZED', 'missing or invalid token');
  return user;
}

function newId() {
  return crypto.randomBytes(12).toString('hex');
}

function jobJson(j) {
  const out = { jobId: j._id, status: j.status, eventId: j.eventId, seats: j.seats };
  if (j.status === 'failed') out.error = j.error;
  out.createdAt = j.createdAt.toISOString();
  out.finishedAt = j.finishedAt ? j.finishedAt.toISOString() : null;
  return out;
}

async function main() {
  const client = new MongoClient(URI, { maxPoolSize: 16, serverSelectionTimeoutMS: 2000 });
  await client.connect();
  const db = client.db();
  const events = db.collection('events');
  const jobs = db.collection('jobs');
  const claims = db.collection('claims');
  await claims.createIndex({ eventId: 1, seat: 1 }, { unique: true });

  // ---- the in-process queue (one booking at a time per process, like the seed's)
  const queue = [];
  let running = false;
  async function book(job) {
    await jobs.updateOne({ _id: job._id }, { $set: { status: 'processing' } });
    const docs = job.seats.map((seat) => ({ _id: `${job.eventId}:${seat}:${job._id}`,
      eventId: job.eventId, seat, jobId: job._id }));
    try {
      await claims.insertMany(docs, { ordered: true });
      await jobs.updateOne({ _id: job._id }, { $set: { status: 'success', finishedAt: new Date() } });
    } catch (e) {
      if (e.code !== 11000 && !(e.writeErrors || []).some((w) => w.code === 11000)) throw e;
      await claims.deleteMany({ jobId: job._id });
      const held = await claims.find({ eventId: job.eventId, seat: { $in: job.seats } }).toArray();
      const taken = held.map((c) => c.seat);
      await jobs.updateOne({ _id: job._id }, { $set: { status: 'failed', finishedAt: new Date(),
        error: { code: 'SEATS_TAKEN', message: `seats already booked: ${taken.join(', ')}` } } });
    }
  }
  async function drain() {
    if (running) return;
    running = true;
    while (queue.length) {
      const job = queue.shift();
      try { await book(job); } catch (e) { console.error(`job ${job._id}: ${e.message}`); }
    }
    running = false;
  }

  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '64kb' }));

  app.post('/api/events', async (req, res) => {
    const { name, rows, cols } = req.body || {};
    let seats = req.body && req.body.seats;
    if (!seats && Number.isInteger(rows) && Number.isInteger(cols)) {
      seats = [];
      for (let r = 0; r < rows; r++) {
        const row = r < 26 ? String.fromCharCode(65 + r) : 'A' + String.fromCharCode(65 + r - 26);
        for (let c = 1; c <= cols; c++) seats.push(`${row}${c}`);
      }
    }
    if (typeof name !== 'string' || !Array.isArray(seats) || !seats.length) {
      return err(res, 400, 'BAD_REQUEST', 'give name and seats or rows/cols');
    }
    const id = newId();
    await events.insertOne({ _id: id, name, seats, createdAt: new Date() });
    res.status(201).location(`/api/events/${id}/seats`).json({ id, name, seats: seats.length });
  });

  app.get('/api/events/:id/seats', async (req, res) => {
    const ev = await events.findOne({ _id: req.params.id });
    if (!ev) return err(res, 404, 'NOT_FOUND', 'no such event');
    const held = await claims.find({ eventId: ev._id }).toArray();
    const ok = new Set();
    const decided = await jobs.find({ _id: { $in: held.map((c) => c.jobId) } }).toArray();
    for (const j of decided) if (j.status === 'success' || j.status === 'processing') ok.add(j._id);
    const booked = new Set(held.filter((c) => ok.has(c.jobId)).map((c) => c.seat));
    res.json({ eventId: ev._id, name: ev.name,
      seats: ev.seats.map((s) => ({ seat: s, status: booked.has(s) ? 'booked' : 'available' })) });
  });

  app.post('/api/seats/book', async (req, res) => {
    const user = auth(req, res);
    if (!user) return;
    const { eventId, seats } = req.body || {};
    if (typeof eventId !== 'string' || !eventId) return err(res, 400, 'BAD_REQUEST', '`eventId` must be the id of an event');
    if (!Array.isArray(seats) || !seats.length || seats.length > MAX_SEATS ||
        new Set(seats).size !== seats.length || !seats.every((s) => typeof s === 'string')) {
      return err(res, 400, 'BAD_REQUEST', '`seats`: 1-64 distinct seat labels');
    }
    try {
      const ev = await events.findOne({ _id: eventId }, { projection: { seats: 1 } });
      if (!ev) return err(res, 404, 'NOT_FOUND', `event '${eventId}' not found`);
      const all = new Set(ev.seats);
      const bad = seats.filter((s) => !all.has(s));
      if (bad.length) return err(res, 400, 'BAD_REQUEST', `unknown seats: ${bad.join(', ')}`);
      const job = { _id: newId(), user, eventId, seats, status: 'queued', createdAt: new Date(),
        finishedAt: null };
      await jobs.insertOne(job);
      queue.push(job);
      setImmediate(drain);
      res.status(202).location(`/api/seats/booking-status/${job._id}`).json(jobJson(job));
    } catch (e) {
      res.set('Retry-After', '5');
      err(res, 503, 'DB_UNAVAILABLE', e.message);
    }
  });

  app.get('/api/seats/booking-status/:jobId', async (req, res) => {
    const user = auth(req, res);
    if (!user) return;
    const job = await jobs.findOne({ _id: req.params.jobId });
    if (!job || job.user !== user) return err(res, 404, 'NOT_FOUND', 'no such job');
    res.json(jobJson(job));
  });

  const server = app.listen(PORT, '127.0.0.1', () => process.send && process.send('ready'));
  server.keepAliveTimeout = 65000;
  process.on('SIGTERM', () => {
    server.close(() => client.close().finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
