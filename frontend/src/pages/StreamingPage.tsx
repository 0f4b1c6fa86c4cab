import { Box } from '@mui/material';
import { useNavigate, useParams } from 'react-router';
import { AlertsPanel } from '../components/AlertsPanel';
import { ConfigCard } from '../components/ConfigCard';
import { DiskCard } from '../components/DiskCard';
import { GroupDialog } from '../components/GroupDialog';
import { GroupsTable } from '../components/GroupsTable';
import { HealthCard } from '../components/HealthCard';
import { HistoryCharts } from '../components/HistoryCharts';
import { LimitsCard } from '../components/LimitsCard';
import { LogViewer } from '../components/LogViewer';
import { QueueCard } from '../components/QueueCard';
import { ResourceCard } from '../components/ResourceCard';
import { StatusCard } from '../components/StatusCard';

/**
 * The streaming control page. Layout: a 12-column grid that becomes 24 columns on
 * wall screens (≥ 2000 px), so the same cards sit side by side instead of stretching.
 */
export function StreamingPage() {
  const { groupId } = useParams();
  const navigate = useNavigate();
  const span = (lg: number, wall: number, md = 12) => ({
    gridColumn: { xs: 'span 12', md: `span ${md}`, lg: `span ${lg}`, wall: `span ${wall}` },
  });
  return (
    <Box
      component="main"
      sx={{
        p: { xs: 1.5, md: 2 },
        display: 'grid',
        gap: 2,
        gridTemplateColumns: { xs: 'repeat(12, minmax(0, 1fr))', wall: 'repeat(24, minmax(0, 1fr))' },
        alignItems: 'stretch',
        maxWidth: 3200,
        mx: 'auto',
      }}
    >
      <Box sx={span(5, 6)}>
        <StatusCard />
      </Box>
      <Box sx={span(4, 5, 6)}>
        <QueueCard />
      </Box>
      <Box sx={span(3, 4, 6)}>
        <ResourceCard />
      </Box>
      <Box sx={span(4, 3, 6)}>
        <HealthCard />
      </Box>
      <Box sx={span(4, 3, 6)}>
        <AlertsPanel />
      </Box>
      <Box sx={span(4, 3, 12)}>
        <LimitsCard />
      </Box>
      <Box sx={span(12, 15)}>
        <HistoryCharts />
      </Box>
      <Box sx={span(6, 9)}>
        <DiskCard />
      </Box>
      <Box sx={span(6, 24)}>
        <ConfigCard />
      </Box>
      <Box sx={span(12, 12)}>
        <GroupsTable />
      </Box>
      <Box sx={span(12, 12)}>
        <LogViewer />
      </Box>
      {groupId ? <GroupDialog groupId={groupId} onClose={() => navigate('/streaming')} /> : null}
    </Box>
  );
}
