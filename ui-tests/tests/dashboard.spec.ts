import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import * as fs from 'fs';
import * as path from 'path';

/** The in-notebook Dashboard (ipywidgets) rendered in JupyterLab; screenshots next to the sidebar's. */
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'ui-tests');
const PROJECT = path.resolve(__dirname, '..', '.demo-project');
const TABS = ['Runs', 'Metric history', 'Champion vs contender', 'Drift', 'Run & triggers', 'Registry'];

test.use({ autoGoto: true });

/** Run ids of the prepared project's train runs (folders under runs/train). */
function trainRunIds(): string[] {
  const folder = path.join(PROJECT, 'runs', 'train');
  return fs.readdirSync(folder).filter(name => fs.statSync(path.join(folder, name)).isDirectory());
}

async function tab(page: IJupyterLabPageFixture, title: string) {
  return page.locator('.ctn-dashboard .lm-TabBar-tab', { hasText: title }).first();
}

test.describe.serial('In-notebook dashboard', () => {
  test('renders the Dashboard widget with the demo runs', async ({ page }) => {
    // the notebook lives at the server root (prepare_project.py), not in the test's own folder
    await page.filebrowser.openHomeDirectory();
    expect(await page.notebook.openByPath('dashboard.ipynb')).toBeTruthy();
    await page.notebook.activate('dashboard.ipynb');
    expect(await page.notebook.run()).toBeTruthy();
    await page.sidebar.close('left'); // the dashboard gets the whole width

    const dashboard = page.locator('.jp-OutputArea-output .ctn-dashboard');
    await expect(dashboard).toBeVisible({ timeout: 120000 });
    // header: project name and champion; every tab is there
    await expect(dashboard).toContainText('credit-default');
    await expect(dashboard).toContainText('champion');
    for (const title of TABS) {
      await expect(await tab(page, title)).toBeVisible();
    }
    // the runs table lists the prepared train runs by id
    const table = dashboard.locator('.ctn-table').first();
    await expect(table).toBeVisible();
    await expect(table).toContainText('run id');
    const ids = trainRunIds();
    expect(ids.length).toBeGreaterThanOrEqual(2);
    for (const id of ids) {
      await expect(table).toContainText(id);
    }
    await expect(table).toContainText('promoted');
    await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png') });

    // champion vs contender of the latest gated run: verdict and metrics table
    await (await tab(page, 'Champion vs contender')).click();
    await expect(dashboard).toContainText('gate');
    await expect(dashboard.locator('.ctn-table:visible').filter({ hasText: 'contender' }).first()).toBeVisible();
    await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard-comparison.png') });

    // registry: the versions table (v2 is the champion)
    await (await tab(page, 'Registry')).click();
    await expect(dashboard.locator('.ctn-table:visible').filter({ hasText: 'champion' }).first()).toBeVisible();
    await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard-registry.png') });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-notebook.png') });
  });
});
