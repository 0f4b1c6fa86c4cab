import { QueryClientProvider } from '@tanstack/react-query';
import { useState } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router';
import { makeQueryClient } from './queryClient';
import { LiveProvider } from './api/live';
import { AppHeader } from './components/AppHeader';
import { TokenDialog } from './components/TokenDialog';
import { StreamingPage } from './pages/StreamingPage';
import { ThemeModeProvider } from './ThemeModeProvider';

export function Shell() {
  return (
    <>
      <AppHeader />
      <Routes>
        <Route path="/" element={<Navigate to="/streaming" replace />} />
        <Route path="/streaming" element={<StreamingPage />} />
        <Route path="/streaming/groups/:groupId" element={<StreamingPage />} />
        <Route path="*" element={<Navigate to="/streaming" replace />} />
      </Routes>
      <TokenDialog />
    </>
  );
}

export default function App() {
  const [qc] = useState(makeQueryClient);
  return (
    <ThemeModeProvider>
      <QueryClientProvider client={qc}>
        <LiveProvider>
          <BrowserRouter>
            <Shell />
          </BrowserRouter>
        </LiveProvider>
      </QueryClientProvider>
    </ThemeModeProvider>
  );
}
