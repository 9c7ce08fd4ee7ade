/** Pipeline: the working copy's pipeline version, the deployed one, whether they differ, the newest checks. */

import type { IPipelineCheck, IPipelineTrack } from '../api';
import { el } from '../dom';
import { formatDuration } from '../model';
import { IPanelContext, Section } from './section';

/** Checks listed, newest first. */
export const CHECKS_SHOWN = 5;
/** Changed files listed before "and N more". */
const FILES_SHOWN = 8;

function versionText(version: { version?: unknown; commit?: unknown } | null | undefined): string {
  if (!version || version.version === undefined || version.version === null) {
    return 'none';
  }
  const commit = typeof version.commit === 'string' && version.commit ? ` (commit ${version.commit.slice(0, 12)})` : '';
  return `${String(version.version)}${commit}`;
}

/** "passed", "failed" or "stopped" for a recorded check. */
export function checkVerdict(check: IPipelineCheck): 'passed' | 'failed' | 'stopped' {
  if (check.cancelled) {
    return 'stopped';
  }
  return check.passed ? 'passed' : 'failed';
}

/** The section's content for one GET /pipeline answer (every value as text). */
export function renderPipelineTrack(track: IPipelineTrack): Node[] {
  const differs = track.deployed !== null && !track.up_to_date;
  const state = track.deployed === null ? 'undeployed' : differs ? 'differs' : 'same';
  const stateText = {
    undeployed: 'No pipeline version deployed yet: runs use the working copy.',
    differs: 'The working copy differs from the deployed version.',
    same: 'The deployed version is the working copy.'
  }[state];
  const versions = el(
    'table',
    { class: 'ct-table ct-track' },
    el('tr', { class: 'ct-track-working' }, el('th', {}, 'working copy'), el('td', {}, versionText(track.working))),
    el('tr', { class: 'ct-track-deployed' }, el('th', {}, 'deployed'), el('td', {}, versionText(track.deployed)))
  );
  const nodes: Node[] = [
    versions,
    el('div', { class: `ct-track-state ct-track-${state}`, 'data-state': state }, stateText)
  ];
  if (differs && track.changed_files.length > 0) {
    const files = el('ul', { class: 'ct-track-files' });
    for (const file of track.changed_files.slice(0, FILES_SHOWN)) {
      files.append(el('li', {}, file));
    }
    if (track.changed_files.length > FILES_SHOWN) {
      files.append(el('li', { class: 'ct-muted' }, `and ${track.changed_files.length - FILES_SHOWN} more`));
    }
    nodes.push(el('div', { class: 'ct-subtitle' }, 'Changed files'), files);
  }
  if (track.require_check) {
    nodes.push(
      el('div', { class: 'ct-muted' }, 'deploy.require_check: a version is deployed only after a passed check.')
    );
  }
  nodes.push(el('div', { class: 'ct-subtitle' }, 'Newest checks'));
  const checks = (track.checks ?? []).slice(-CHECKS_SHOWN).reverse();
  if (checks.length === 0) {
    nodes.push(el('p', { class: 'ct-empty ct-no-checks' }, 'No checks yet: run `ctn pipeline check`.'));
    return nodes;
  }
  const list = el('ul', { class: 'ct-checks' });
  for (const check of checks) {
    const verdict = checkVerdict(check);
    const icon = { passed: '✔', failed: '✖', stopped: '■' }[verdict];
    const when = (check.finished_at ?? check.started_at ?? '').slice(0, 19).replace('T', ' ');
    const item = el(
      'li',
      { class: `ct-check ct-check-${verdict}`, 'data-verdict': verdict },
      el('span', { class: 'ct-check-icon', title: verdict }, icon),
      el('span', { class: 'ct-check-version' }, ` ${String(check.version ?? '?')} ${verdict}`),
      el(
        'span',
        { class: 'ct-muted' },
        ` · ${when}${check.actor ? ` by ${String(check.actor)}` : ''}${typeof check.duration_s === 'number' ? ` · ${formatDuration(check.duration_s)}` : ''}${check.deployed ? ' · deployed' : ''}`
      )
    );
    if (check.error) {
      item.append(el('div', { class: 'ct-error' }, String(check.error)));
    }
    list.append(item);
  }
  nodes.push(list);
  return nodes;
}

export class PipelineSection extends Section {
  constructor(ctx: IPanelContext) {
    super('pipeline', 'Pipeline', ctx);
  }

  render(result: PromiseSettledResult<IPipelineTrack>): void {
    const track = this.settled(result, 'Pipeline track unavailable: ');
    if (track === null) {
      return;
    }
    this.body.replaceChildren(...renderPipelineTrack(track));
  }
}
